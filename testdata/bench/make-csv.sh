#!/bin/sh
# make-csv.sh AORS WATCHERS_PER_AOR [DOMAIN]
# Writes the SIPp injection files for the Kamailio comparison runs:
#   aors.csv      each AOR once (reg-notify.xml, register.xml)
#   watchers.csv  each AOR WATCHERS_PER_AOR times, AOR by AOR cycling, so
#                 that the first calls already cover every AOR (watcher.xml)
# AOR users are u0, u1, ... in DOMAIN (default regload.invalid).
set -eu
aors=${1:?AORS}
per=${2:?WATCHERS_PER_AOR}
domain=${3:-regload.invalid}
{
  echo SEQUENTIAL
  i=0
  while [ "$i" -lt "$aors" ]; do echo "u$i;$domain;"; i=$((i + 1)); done
} >aors.csv
{
  echo SEQUENTIAL
  w=0
  while [ "$w" -lt "$per" ]; do
    i=0
    while [ "$i" -lt "$aors" ]; do echo "u$i;$domain;"; i=$((i + 1)); done
    w=$((w + 1))
  done
} >watchers.csv
echo "aors.csv: $aors AORs; watchers.csv: $((aors * per)) watchers"
