#!/bin/bash
# The SFTP library probe on the network lab: sshd in host b, the probes in
# host a; LINK is the link's settings (netlab TOML lines). Bounded: each
# run has a timeout; sshd stopped by its PID; the lab taken down.
set -u
cd /tmp/sftp-probe
NETLAB=/work/main/build/tools/netlab/netlab
NAME=sftplab
LABEL=$1; shift
printf '[hosts.a]\n[hosts.b]\n[links.ab]\nhosts = ["a", "b"]\n%b' "$*" > lab.toml
$NETLAB down $NAME >/dev/null 2>&1
$NETLAB up lab.toml --name $NAME --ttl 1800s > /dev/null || exit 1
sed -e 's/^ListenAddress .*/ListenAddress 10.99.0.2/' -e 's#^PidFile .*#PidFile /tmp/sftp-probe/sshd-lab.pid#' sshd_config > sshd_lab_config
$NETLAB exec --lab $NAME b -- /usr/sbin/sshd -f /tmp/sftp-probe/sshd_lab_config -E /tmp/sftp-probe/sshd-lab.log
sleep 1
SSHO="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
ex(){ $NETLAB exec --lab $NAME a -- env HOST=10.99.0.2 PORT=2222 "$@"; }
run(){ local label=$1; shift; local s=$(date +%s.%N); timeout 150 $NETLAB exec --lab $NAME a -- env HOST=10.99.0.2 PORT=2222 "$@" > run.out 2> run.err; local rc=$?; local e=$(date +%s.%N);
  echo "$LABEL $label rc=$rc wall=$(awk -v s=$s -v e=$e 'BEGIN{printf "%.2f",e-s}') :: $(tr '\n' ' ' < run.out)" | tee -a lab-results.txt; }
echo "get /tmp/sftp-probe/src.bin /tmp/sftp-probe/out-sftp.bin" > get.batch
echo "put /tmp/sftp-probe/src.bin /tmp/sftp-probe/up-sftp.bin" > put.batch
for i in 1; do
  run "r$i libssh-down-32x64K" ./p_ssh down 32 64 64
  run "r$i libssh-down-128x64K" ./p_ssh down 128 64 64
  run "r$i libssh2-down-2M" ./p_ssh2 down 2048
  run "r$i libssh2-down-8M" ./p_ssh2 down 8192
  [ -z "${SKIP_SYNC:-}" ] && run "r$i libssh-up-sync" ./p_ssh up 32 64 64
  run "r$i libssh2-up-2M" ./p_ssh2 up 2048
  run "r$i libssh2-up-8M" ./p_ssh2 up 8192
  run "r$i scp-down" scp -q -P 2222 -i clientkey $SSHO root@10.99.0.2:/tmp/sftp-probe/src.bin /tmp/sftp-probe/out-scp.bin
  run "r$i sftp-get" sftp -q -P 2222 -i clientkey $SSHO -b get.batch root@10.99.0.2
  run "r$i sftp-put" sftp -q -P 2222 -i clientkey $SSHO -b put.batch root@10.99.0.2
done
kill $(cat /tmp/sftp-probe/sshd-lab.pid)
$NETLAB down $NAME > /dev/null
