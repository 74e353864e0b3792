#!/bin/bash
# usage: bench.sh ; results appended to results.txt
cd /tmp/sftp-probe
busy(){ awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }
run(){ # label cmd...
  local label=$1; shift
  read b0 t0 < <(busy); local s=$(date +%s.%N)
  "$@" > run.out 2> run.err; local rc=$?
  local e=$(date +%s.%N); read b1 t1 < <(busy)
  local cpu=$(awk -v b=$((b1-b0)) -v t=$((t1-t0)) 'BEGIN{printf "%.0f", 200*b/t}')
  echo "$label rc=$rc wall=$(awk -v s=$s -v e=$e 'BEGIN{printf "%.3f",e-s}') sysCPU%(of200)=$cpu :: $(tr '\n' ' ' < run.out)" | tee -a results.txt
}
SSHO="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
echo "get /tmp/sftp-probe/src.bin /tmp/sftp-probe/out-sftp.bin" > get.batch
echo "put /tmp/sftp-probe/src.bin /tmp/sftp-probe/up-sftp.bin" > put.batch
for i in 1 2 3; do
  run "r$i libssh2-down" ./p_ssh2 down 2048
  run "r$i libssh-down"  ./p_ssh down 32 64 64
  run "r$i libssh2-up"   ./p_ssh2 up 2048
  run "r$i libssh-up"    ./p_ssh up 32 64 64
  run "r$i scp-down"     scp -q -P 2222 -i clientkey $SSHO root@127.0.0.1:/tmp/sftp-probe/src.bin /tmp/sftp-probe/out-scp.bin
  run "r$i sftp-get"     sftp -q -P 2222 -i clientkey $SSHO -b get.batch root@127.0.0.1
  run "r$i sftp-put"     sftp -q -P 2222 -i clientkey $SSHO -b put.batch root@127.0.0.1
done
for f in out-ssh2 up-ssh2 out-ssh up-ssh out-scp out-sftp up-sftp; do cmp src.bin $f.bin && echo "cmp $f OK" | tee -a results.txt; done
