#!/bin/bash
set -u
cd /tmp/sftp-probe
NETLAB=/work/main/build/tools/netlab/netlab; NAME=sftplab
printf '[hosts.a]\n[hosts.b]\n[links.ab]\nhosts = ["a", "b"]\nrate = "1gbit"\ndelay = "25ms"\n' > lab.toml
$NETLAB down $NAME >/dev/null 2>&1; $NETLAB up lab.toml --name $NAME --ttl 1800s > /dev/null || exit 1
$NETLAB exec --lab $NAME b -- /usr/sbin/sshd -f /tmp/sftp-probe/sshd_lab_config -E /tmp/sftp-probe/sshd-lab.log
sleep 1
for r in 64 1024 8192 32768; do timeout 120 $NETLAB exec --lab $NAME a -- env HOST=10.99.0.2 ./p_raw $r | tee -a lab-results.txt; done
kill $(cat /tmp/sftp-probe/sshd-lab.pid); $NETLAB down $NAME > /dev/null
