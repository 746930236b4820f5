#!/usr/bin/env bash
# Instructions per call by function, from one callgrind dump that
# scripts/bench/profile.sh left (target/profile/cg.out.<pid>.<n>; its
# "desc: Trigger" line names the workload): each function's own cost
# (self), with the code inlined into it counted to it, divided by the
# calls measured, and their sum.
#
#   scripts/bench/module-cost.sh target/profile/cg.out.1234.5 50000
#   scripts/bench/module-cost.sh DUMP 50000 'moduleNotifyKeyspaceEvent|listNext|listRewind'
#
# Arguments: the dump; N, the calls it measured; a regex of function names
# [the module's crates: redis_throttle, throttle_core].
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 DUMP N [REGEX]" >&2; exit 2; }
dump=$1 n=$2 re=${3:-'redis_throttle|throttle_core'}
command -v callgrind_annotate >/dev/null || { echo "callgrind_annotate is needed (valgrind)" >&2; exit 1; }
callgrind_annotate --auto=no --threshold=100 --inclusive=no "$dump" 2>/dev/null |
  awk -v n="$n" -v re="$re" '
    # "  1,234 ( 0.12%)  file:function [object]": the function is what
    # follows the first colon (inlined code names its own file, the same
    # function).
    $1 ~ /^[0-9,]+$/ && $2 ~ /^\(/ {
      line = $0
      sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", line)
      sub(/ +\[[^]]*\] *$/, "", line)
      i = index(line, ":")
      if (i == 0) next
      fn = substr(line, i + 1)
      gsub(/::h[0-9a-f]{16}/, "", fn)
      if (fn !~ re) next
      v = $1
      gsub(",", "", v)
      cost[fn] += v
    }
    END {
      for (f in cost) { printf "%10.1f  %s\n", cost[f] / n, f; total += cost[f] }
      printf "%10.1f  (sum)\n", total / n
    }' | sort -rn
