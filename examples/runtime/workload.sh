# Counts the words of its arguments and reports where it ran.
echo "workload running in $(/bin/busybox pwd)"
echo "$@" | /bin/busybox wc -w
