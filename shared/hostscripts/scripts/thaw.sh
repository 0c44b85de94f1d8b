#!/usr/bin/env bash
# pgfleet thaw: releases what freeze.sh froze. Idempotent: a mount that is not frozen counts as
# already thawed, and it works without a freeze record (a fresh host, or after the watchdog).
#
# Serialized with freeze.sh and the watchdog: it first takes the host's lock (<state dir>/lock),
# waiting a bounded time, so a thaw that arrives while a freeze is still running (a freeze command
# that timed out on the caller's side) thaws after that freeze, never before it. When the lock
# cannot be had, it fails and changes nothing: the caller retries, the watchdog stays armed.
#
# Order: fsfreeze -u every mount first (the writes-blocked window ends there), then, only when
# every mount is thawed, disarm the watchdog, remove standby.signal only when our marker says
# freeze.sh wrote it, remove the freeze record; then probe each mount with a small fsync'd write
# that runs in the background with a bounded wait (a writer blocked on a frozen filesystem cannot
# be killed). It reports the mounts still frozen and whether the watchdog fired (the freeze's
# token and the time, from <state dir>/watchdog-fired): a set snapshotted after that was not
# taken under a freeze.
#
# Output: exactly one compact JSON line on stdout, on success and on failure (then the exit status
# is non-zero and the line is {"ok":false,"action":"thaw","error":...}). Diagnostics go to stderr.
# Timestamps are host-clock microseconds since the epoch. Run as root.
set -euo pipefail
set -o errtrace
export LC_ALL=C
umask 077

# The whole script is one block: bash reads all of it before running any of it, and nothing it
# runs can read the script's own text when it comes on stdin (bash -s).
{

# fd 3 carries the result line; anything else a command prints goes to stderr.
exec 3>&1 1>&2

readonly ACTION=thaw
# How long the write probes may take.
readonly PROBE_WAIT_SECONDS=5

# Flag defaults (one variable per flag: --state-dir is opt_state_dir).
opt_mounts=''
opt_pgdata=''
opt_state_dir='/run/pgfleet'
opt_probe='yes'

# hostscripts.Source replaces the next line with the value patterns and lock waits, then
# scripts/common.sh: the constants, state and helpers both scripts share (now_us, log, json_str,
# json_arr, split_csv, watchdog_is_ours, proc_alive, take_lock, setopt, check).
# @common

STILL_FROZEN=()

# fail MESSAGE: print the failure line with the mounts known to be still frozen, exit 1.
fail() {
	trap - ERR
	json_arr ${STILL_FROZEN[@]+"${STILL_FROZEN[@]}"}
	fail_line "$1" ",\"still_frozen\":$REPLY"
}

trap on_exit EXIT
trap 'LAST_ERR="line $LINENO: $BASH_COMMAND"' ERR
trap 'fail "interrupted by a signal"' INT TERM HUP

parse_args() {
	while (($# > 0)); do
		if (($# < 2)); then fail "flag $1 needs a value"; fi
		case $1 in
		--mounts) setopt opt_mounts "$2" ;;
		--pgdata) setopt opt_pgdata "$2" ;;
		--state-dir) setopt opt_state_dir "$2" ;;
		--probe) setopt opt_probe "$2" ;;
		*) fail "unknown flag $1 (flags: --mounts --pgdata --state-dir --probe)" ;;
		esac
		shift 2
	done
}

# fs_of MODE PATH: the filesystem mounted at (MODE=mountpoint) or holding (MODE=target) PATH, as
# FS_TYPE. Returns 1 when there is none.
fs_of() {
	local line target
	line=$(findmnt -rn -o TARGET,FSTYPE "--$1" "$2" 2>/dev/null | tail -n 1) || return 1
	[[ -n $line ]] || return 1
	read -r target FS_TYPE <<<"$line"
	[[ -n $target ]]
}

parse_args "$@"
if [[ -z $opt_mounts ]]; then fail "--mounts is required"; fi
check mounts "$opt_mounts" "$RE_PATHS"
if [[ -n $opt_pgdata ]]; then check pgdata "$opt_pgdata" "$RE_PATH"; fi
check state-dir "$opt_state_dir" "$RE_PATH"
check probe "$opt_probe" "$RE_PROBE"
command -v flock >/dev/null 2>&1 || fail "flock is not installed (util-linux)"

if [[ ! -d $opt_state_dir ]]; then
	if ! { mkdir -p -- "$opt_state_dir" && chmod 0700 -- "$opt_state_dir"; }; then fail "cannot create state dir $opt_state_dir"; fi
fi
RECORD="$opt_state_dir/$RECORD_NAME"
REC=''
REC_TOKEN=''
REC_PID=0
REC_PGDATA=''
REC_MOUNTS=()
# read_record: the freeze record's token, watchdog pid, PGDATA and frozen mounts, if there is one.
read_record() {
	[[ -f $RECORD ]] || return 0
	IFS= read -r -d '' REC <"$RECORD" || true
	if [[ $REC =~ \"token\":\"([0-9-]+)\" ]]; then REC_TOKEN=${BASH_REMATCH[1]}; fi
	if [[ $REC =~ \"watchdog_pid\":([0-9]+) ]]; then REC_PID=${BASH_REMATCH[1]}; fi
	if [[ $REC =~ \"pgdata\":\"([^\"]*)\" ]]; then REC_PGDATA=${BASH_REMATCH[1]}; fi
	if [[ $REC =~ \"frozen_mounts\":\[([^]]*)\] ]]; then
		split_csv "${BASH_REMATCH[1]//\"/}"
		REC_MOUNTS=(${SPLIT[@]+"${SPLIT[@]}"})
	fi
}
# Wait for a freeze (or a firing watchdog) still at work on this host; it is fine to wait here:
# writes are blocked only once that freeze has frozen, and this thaw runs right after it.
if ! take_lock "$opt_state_dir" "$THAW_LOCK_WAIT_SECONDS"; then
	# Not knowing better, report the recorded freeze's mounts as still frozen.
	read_record
	STILL_FROZEN=(${REC_MOUNTS[@]+"${REC_MOUNTS[@]}"})
	fail "a pgfleet freeze on this host still holds $opt_state_dir/$LOCK_NAME after ${THAW_LOCK_WAIT_SECONDS}s: nothing was thawed yet; retry (the watchdog stays armed)"
fi
read_record

# Every mount named here or frozen by the recorded freeze.
split_csv "$opt_mounts"
MOUNTS=()
for m in "${SPLIT[@]}" ${REC_MOUNTS[@]+"${REC_MOUNTS[@]}"}; do
	dup=0
	for seen in ${MOUNTS[@]+"${MOUNTS[@]}"}; do
		if [[ $seen == "$m" ]]; then dup=1; fi
	done
	if ((dup == 0)); then MOUNTS+=("$m"); fi
done

# The writes-blocked window ends here: every mount thawed at once. A mount whose thaw failed is
# asked again afterwards, for the reason (not frozen: EINVAL).
THAWED=()
FAILED=()
FAILED_OUT=()
PIDS=()
now_us
THAW_STARTED_US=$REPLY
for m in "${MOUNTS[@]}"; do
	fsfreeze -u "$m" 2>/dev/null 3>&- &
	PIDS+=("$!")
done
for i in "${!PIDS[@]}"; do
	if wait "${PIDS[i]}"; then THAWED+=("${MOUNTS[i]}"); else FAILED+=("${MOUNTS[i]}"); fi
done
now_us
THAWED_US=$REPLY
for i in ${FAILED[@]+"${!FAILED[@]}"}; do
	if out=$(fsfreeze -u "${FAILED[i]}" 2>&1); then
		# The first attempt failed for a passing reason; this one thawed it.
		THAWED+=("${FAILED[i]}")
		now_us
		THAWED_US=$REPLY
		out=''
	fi
	FAILED_OUT+=("$out")
done

# Sort out why the others did not thaw: not frozen is fine, anything else is an error.
ALREADY=()
ERRORS=''
PROBE_MOUNTS=(${THAWED[@]+"${THAWED[@]}"})
for i in ${FAILED[@]+"${!FAILED[@]}"}; do
	m=${FAILED[i]}
	out=${FAILED_OUT[i]}
	if [[ -z $out ]]; then
		continue
	elif [[ ! -d $m ]] || ! fs_of mountpoint "$(readlink -f -- "$m")"; then
		log "$m is not a mount point: nothing to thaw there"
		ALREADY+=("$m")
	elif [[ $out == *"Invalid argument"* ]]; then
		ALREADY+=("$m")
		PROBE_MOUNTS+=("$m")
	elif [[ $FS_TYPE == zfs ]]; then
		ALREADY+=("$m")
		PROBE_MOUNTS+=("$m")
	else
		ERRORS+="${ERRORS:+; }fsfreeze -u $m failed: $out"
		STILL_FROZEN+=("$m")
		PROBE_MOUNTS+=("$m")
	fi
done
if ((${#THAWED[@]} > 0)); then log "thawed ${THAWED[*]}"; fi

WATCHDOG_DISARMED=false
STANDBY_REMOVED=false
if [[ -z $ERRORS ]]; then
	# Disarm the watchdog of the recorded freeze (its whole session: bash and its sleep).
	if ((REC_PID > 0)) && [[ -n $REC_TOKEN ]] && watchdog_is_ours "$REC_PID" "$REC_TOKEN"; then
		kill -TERM -- "-$REC_PID" 2>/dev/null || kill -TERM "$REC_PID" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			if ! proc_alive "$REC_PID"; then break; fi
			sleep 0.01
		done
		WATCHDOG_DISARMED=true
		log "watchdog $REC_PID disarmed"
	fi
	# standby.signal goes only when freeze.sh wrote it (the marker), never one an operator wrote.
	pgdata=${opt_pgdata:-$REC_PGDATA}
	if [[ -n $pgdata && -e $pgdata/$MARKER_NAME ]]; then
		if [[ -e $pgdata/standby.signal ]]; then
			rm -f -- "$pgdata/standby.signal" || fail "cannot remove $pgdata/standby.signal"
			STANDBY_REMOVED=true
			log "removed $pgdata/standby.signal"
		fi
		rm -f -- "$pgdata/$MARKER_NAME" || fail "cannot remove $pgdata/$MARKER_NAME"
	fi
	if [[ -e $RECORD ]]; then rm -f -- "$RECORD" || fail "cannot remove $RECORD"; fi
else
	log "not disarming the watchdog nor removing the freeze record: $ERRORS"
fi

# Write probes, in the background with a bounded wait.
PROBE_OK=false
if [[ $opt_probe == yes ]] && ((${#PROBE_MOUNTS[@]} > 0)); then
	PIDS=()
	for m in "${PROBE_MOUNTS[@]}"; do
		f="$m/.pgfleet-probe-$$"
		# Without the lock's fd: a probe stuck on a filesystem someone else froze must not keep
		# the next freeze or thaw out.
		(dd if=/dev/zero of="$f" bs=4096 count=1 conv=fsync status=none && rm -f -- "$f") \
			</dev/null >/dev/null 2>&1 3>&- 9>&- &
		PIDS+=("$!")
	done
	for ((i = 0; i < PROBE_WAIT_SECONDS * 100; i++)); do
		alive=0
		for p in "${PIDS[@]}"; do
			if kill -0 "$p" 2>/dev/null; then alive=1; fi
		done
		if ((alive == 0)); then break; fi
		sleep 0.01
	done
	PROBE_OK=true
	for i in "${!PIDS[@]}"; do
		p=${PIDS[i]}
		if kill -0 "$p" 2>/dev/null; then
			PROBE_OK=false
			log "write probe on ${PROBE_MOUNTS[i]} did not finish within ${PROBE_WAIT_SECONDS}s"
		elif ! wait "$p"; then
			PROBE_OK=false
			log "write probe on ${PROBE_MOUNTS[i]} failed"
		fi
	done
fi

# Did a watchdog fire (it leaves its freeze's token and the time)?
FIRED_TOKEN=''
FIRED_US=0
if read -r t us _ 2>/dev/null <"$opt_state_dir/$FIRED_NAME" && [[ $t =~ ^[0-9]+-[0-9]+$ && $us =~ ^[0-9]+$ ]]; then
	FIRED_TOKEN=$t
	FIRED_US=$us
fi

json_arr ${THAWED[@]+"${THAWED[@]}"}
thawed_json=$REPLY
json_arr ${STILL_FROZEN[@]+"${STILL_FROZEN[@]}"}
still_json=$REPLY
json_arr ${ALREADY[@]+"${ALREADY[@]}"}
already_json=$REPLY
json_str "$HOST_NAME"
host_json=$REPLY
json_str "$ERRORS"
err_json=$REPLY
OK=true
if [[ -n $ERRORS ]]; then OK=false; fi
now_us
# shellcheck disable=SC2034 # read by fail_line and on_exit (common.sh)
RESULT_DONE=1
printf '{"ok":%s,"action":"%s","host":%s,"error":%s,"thawed":%s,"already_thawed":%s,"still_frozen":%s,"watchdog_disarmed":%s,"watchdog_fired_token":"%s","watchdog_fired_us":%s,"standby_signal_removed":%s,"probe_ok":%s,"thaw_started_us":%s,"thawed_us":%s,"started_us":%s,"finished_us":%s}\n' \
	"$OK" "$ACTION" "$host_json" "$err_json" "$thawed_json" "$already_json" "$still_json" "$WATCHDOG_DISARMED" \
	"$FIRED_TOKEN" "$FIRED_US" "$STANDBY_REMOVED" "$PROBE_OK" "$THAW_STARTED_US" "$THAWED_US" "$STARTED_US" "$REPLY" >&3
if [[ $OK == true ]]; then exit 0; fi
exit 1
} </dev/null
