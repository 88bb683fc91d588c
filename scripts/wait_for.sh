# Sourced by scripts/quickstart.sh and bench/run.sh, which set WORK (their log dir).
# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND until it succeeds; after SECONDS it
# prints the end of the logs in $WORK and exits 1, naming the caller ($0) and DESCRIPTION.
wait_for() {
  local what=$1 seconds=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "$(basename "$0" .sh): timed out waiting for $what" >&2
      tail -n 20 "$WORK"/*.log >&2 || true
      exit 1
    fi
    sleep 0.1
  done
}
