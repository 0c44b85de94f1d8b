#!/usr/bin/env bash
# pgfleet freeze: prepares one PostgreSQL host for a multi-volume EBS snapshot set.
#
# Everything that can fail is checked before anything changes: flags, mount points, filesystems
# that must never be frozen (/, the SSM agent's state and logs, the state dir, this script's
# working directory and TMPDIR), an earlier freeze not yet thawed, PostgreSQL up. Then: sync,
# CHECKPOINT, read the checkpoint position, write standby.signal on a primary (a restore must never
# promote itself), arm a detached watchdog, write the freeze record, fsfreeze the data
# filesystems (ZFS is never frozen), start the watchdog's countdown and confirm it is alive.
#
# Freeze and thaw are serialized on the host: this script holds an exclusive lock on
# <state dir>/lock from before it reads the freeze record until it exits, and its fsfreeze -f
# processes hold it too, so a thaw that arrives during a freeze waits for it, then thaws.
#
# The watchdog (a process in its own session, so it outlives this script and its command) waits
# for the countdown to start: the moment every mount is frozen (or this script's end, if it dies
# before saying so). It thaws --watchdog-seconds later unless a thaw disarms it first, and leaves
# <state dir>/watchdog-fired with the freeze's token, so a late thaw can report that the set was
# not taken under a freeze. After freezing, this script checks the watchdog is alive and armed;
# if not, it thaws at once and fails.
#
# Output: exactly one compact JSON line on stdout, on success and on failure (then the exit status
# is non-zero and the line is {"ok":false,"action":"freeze","error":...}). Diagnostics go to
# stderr. Timestamps are host-clock microseconds since the epoch. Run as root; every path and port
# comes from a flag. The same text runs as an SSM Run Command document and with bash locally.
set -euo pipefail
set -o errtrace
export LC_ALL=C
umask 077

# The whole script is one block: bash reads all of it before running any of it, and nothing it
# runs can read the script's own text when it comes on stdin (bash -s).
{

# fd 3 carries the result line; anything else a command prints goes to stderr.
exec 3>&1 1>&2

readonly ACTION=freeze
# Filesystems fsfreeze can freeze; zfs is handled apart (never frozen).
readonly FREEZABLE=' ext2 ext3 ext4 xfs btrfs f2fs jfs '

# Flag defaults (one variable per flag: --watchdog-seconds is opt_watchdog_seconds).
opt_pgdata=''
opt_port='5432'
opt_pg_bin='/usr/lib/postgresql/15/bin'
opt_pg_user='postgres'
opt_pg_host='/var/run/postgresql'
opt_mounts=''
opt_filesystem='auto'
opt_consistency='freeze'
opt_watchdog_seconds='10'
opt_state_dir='/run/pgfleet'
opt_protect='/var/lib/amazon/ssm,/var/log/amazon/ssm'
opt_standby_signal='auto'

# hostscripts.Source replaces the next line with the value patterns and lock waits, then
# scripts/common.sh: the constants, state and helpers both scripts share (now_us, log, json_str,
# json_arr, split_csv, watchdog_is_ours, proc_alive, take_lock, setopt, check).
# @common

STATE_DIR=''
RECORD=''
PGDATA_DIR=''
WATCHDOG_PID=0
RECORD_WRITTEN=0
STANDBY_WRITTEN=0
FROZEN=()
FREEZE_LIST=()
PIDS=()
FREEZING=0
STILL_FROZEN=()

# rollback undoes what this run changed: thaw, disarm, remove the record and our standby.signal.
# The watchdog stays armed when a thaw fails, so the host is thawed by it in the end; the mounts
# it could not thaw are left in STILL_FROZEN.
rollback() {
	local m p out problems='' thaw=(${FROZEN[@]+"${FROZEN[@]}"})
	if ((FREEZING)); then
		# Interrupted while the fsfreeze processes ran: let them finish, then thaw them all.
		for p in ${PIDS[@]+"${PIDS[@]}"}; do wait "$p" 2>/dev/null || true; done
		thaw=("${FREEZE_LIST[@]}")
		FREEZING=0
	fi
	STILL_FROZEN=()
	ROLLBACK_THAWED=${#thaw[@]}
	for m in ${thaw[@]+"${thaw[@]}"}; do
		if ! out=$(fsfreeze -u "$m" 2>&1) && [[ $out != *"Invalid argument"* ]]; then
			problems+=" thaw of $m failed: $out;"
			STILL_FROZEN+=("$m")
		fi
	done
	FROZEN=()
	if [[ -z $problems ]] && ((WATCHDOG_PID > 0)); then
		if watchdog_is_ours "$WATCHDOG_PID" "$TOKEN"; then
			kill -TERM -- "-$WATCHDOG_PID" 2>/dev/null || kill -TERM "$WATCHDOG_PID" 2>/dev/null || true
		fi
		WATCHDOG_PID=0
	fi
	if ((RECORD_WRITTEN)) && [[ -z $problems ]]; then
		rm -f -- "$RECORD" || problems+=" could not remove $RECORD;"
		RECORD_WRITTEN=0
	fi
	if ((STANDBY_WRITTEN)) && [[ -z $problems ]]; then
		if ! { rm -f -- "$PGDATA_DIR/standby.signal" && rm -f -- "$PGDATA_DIR/$MARKER_NAME"; }; then
			problems+=" could not remove $PGDATA_DIR/standby.signal;"
		fi
		STANDBY_WRITTEN=0
	fi
	ROLLBACK_PROBLEMS=$problems
}

# fail MESSAGE: undo, print the failure line with what is still frozen, exit 1.
fail() {
	local msg=$1 frozen=false
	trap - ERR
	ROLLBACK_PROBLEMS=''
	ROLLBACK_THAWED=0
	rollback
	if [[ -n $ROLLBACK_PROBLEMS ]]; then
		msg+=" (cleanup:$ROLLBACK_PROBLEMS the watchdog thaws the rest)"
	elif ((ROLLBACK_THAWED > 0)); then
		msg+="; nothing is left frozen"
	fi
	if ((${#STILL_FROZEN[@]} > 0)); then frozen=true; fi
	json_arr ${STILL_FROZEN[@]+"${STILL_FROZEN[@]}"}
	fail_line "$msg" ",\"frozen\":$frozen,\"still_frozen\":$REPLY,\"token\":\"${TOKEN:-}\""
}

trap on_exit EXIT
trap 'LAST_ERR="line $LINENO: $BASH_COMMAND"' ERR
trap 'fail "interrupted by a signal"' INT TERM HUP

TOKEN="$STARTED_US-$$"

parse_args() {
	while (($# > 0)); do
		if (($# < 2)); then fail "flag $1 needs a value"; fi
		case $1 in
		--pgdata) setopt opt_pgdata "$2" ;;
		--port) setopt opt_port "$2" ;;
		--pg-bin) setopt opt_pg_bin "$2" ;;
		--pg-user) setopt opt_pg_user "$2" ;;
		--pg-host) setopt opt_pg_host "$2" ;;
		--mounts) setopt opt_mounts "$2" ;;
		--filesystem) setopt opt_filesystem "$2" ;;
		--consistency) setopt opt_consistency "$2" ;;
		--watchdog-seconds) setopt opt_watchdog_seconds "$2" ;;
		--state-dir) setopt opt_state_dir "$2" ;;
		--protect) setopt opt_protect "$2" ;;
		--standby-signal) setopt opt_standby_signal "$2" ;;
		*) fail "unknown flag $1 (flags: --pgdata --port --pg-bin --pg-user --pg-host --mounts --filesystem --consistency --watchdog-seconds --state-dir --protect --standby-signal)" ;;
		esac
		shift 2
	done
}

validate_flags() {
	if [[ -z $opt_pgdata ]]; then fail "--pgdata is required"; fi
	if [[ -z $opt_mounts ]]; then fail "--mounts is required"; fi
	check pgdata "$opt_pgdata" "$RE_PATH"
	check port "$opt_port" "$RE_PORT"
	check pg-bin "$opt_pg_bin" "$RE_PATH"
	check pg-user "$opt_pg_user" "$RE_USER"
	check pg-host "$opt_pg_host" "$RE_PATH"
	check mounts "$opt_mounts" "$RE_PATHS"
	check filesystem "$opt_filesystem" "$RE_FILESYSTEM"
	check consistency "$opt_consistency" "$RE_CONSISTENCY"
	check watchdog-seconds "$opt_watchdog_seconds" "$RE_WATCHDOG"
	check state-dir "$opt_state_dir" "$RE_PATH"
	check protect "$opt_protect" "$RE_PATHS"
	check standby-signal "$opt_standby_signal" "$RE_STANDBY"
	if ((10#$opt_port < 1 || 10#$opt_port > 65535)); then fail "--port $opt_port: use 1-65535"; fi
}

# fs_of MODE PATH: the filesystem mounted at (MODE=mountpoint) or holding (MODE=target) PATH, as
# FS_TARGET FS_TYPE FS_MAJMIN FS_SOURCE. Returns 1 when there is none.
fs_of() {
	local line
	line=$(findmnt -rn -o TARGET,FSTYPE,MAJ:MIN,SOURCE "--$1" "$2" 2>/dev/null | tail -n 1) || return 1
	[[ -n $line ]] || return 1
	read -r FS_TARGET FS_TYPE FS_MAJMIN FS_SOURCE <<<"$line"
}

# existing_ancestor PATH: REPLY = PATH or its nearest existing parent.
existing_ancestor() {
	local p=$1
	while [[ ! -e $p && $p != / && -n $p ]]; do p=$(dirname -- "$p"); done
	REPLY=${p:-/}
}

# volume_id_of SOURCE: REPLY = the EBS volume id(s) under a block device (nvme serial
# "vol0abc" -> "vol-0abc", parents walked for md/lvm; several joined by commas), the backing file
# of a loop device, or "".
volume_id_of() {
	local src=$1 dev name serial ids=() id seen=' '
	REPLY=''
	[[ $src == /dev/* ]] || return 0
	dev=$(readlink -f -- "$src" 2>/dev/null) || dev=$src
	name=${dev#/dev/}
	if [[ $name =~ ^loop[0-9]+$ ]]; then
		if [[ -r /sys/block/$name/loop/backing_file ]]; then
			read -r REPLY <"/sys/block/$name/loop/backing_file" || true
		fi
		return 0
	fi
	command -v lsblk >/dev/null 2>&1 || return 0
	while read -r name serial; do
		if [[ ${serial:-} =~ ^vol-?([0-9a-f]{8,32})$ ]]; then
			id="vol-${BASH_REMATCH[1]}"
			if [[ $seen != *" $id "* ]]; then
				seen+="$id "
				ids+=("$id")
			fi
		fi
	done < <(lsblk -nrs -o NAME,SERIAL -- "$dev" 2>/dev/null || true)
	if ((${#ids[@]} > 0)); then
		REPLY=$(printf '%s\n' "${ids[@]}" | sort | paste -sd, -)
	fi
}

# as_pg CMD...: run CMD as the PostgreSQL OS user.
as_pg() {
	if ((EUID == 0)) && [[ $opt_pg_user != root ]]; then
		if command -v runuser >/dev/null 2>&1; then
			(cd / && exec runuser -u "$opt_pg_user" -- "$@")
		else
			# shellcheck disable=SC2016
			(cd / && exec su -s /bin/sh -c 'exec "$0" "$@"' "$opt_pg_user" "$@")
		fi
	else
		"$@"
	fi
}

# flush_mounts: syncfs each data mount (a global sync could wait on a filesystem someone else
# froze); plain sync where coreutils has no sync -f.
flush_mounts() {
	local m
	for m in "${MOUNTS[@]}"; do
		if ! sync -f -- "$m" 2>/dev/null 9>&-; then
			sync 9>&-
			return 0
		fi
	done
}

# pg_psql runs psql without the lock's fd: a hung query must not keep a thaw out after this
# script is gone.
pg_psql() {
	as_pg env PGCONNECT_TIMEOUT=10 PGAPPNAME=pgfleet-freeze "$opt_pg_bin/psql" -X -A -t -q \
		-v ON_ERROR_STOP=1 -F $'\x1f' -h "$opt_pg_host" -p "$opt_port" -d postgres "$@" 9>&-
}

parse_args "$@"
validate_flags

# a) Where things are, and what must never be frozen.
STATE_DIR=$opt_state_dir
RECORD="$STATE_DIR/$RECORD_NAME"
PGDATA_DIR=$opt_pgdata

fs_of mountpoint / || fail "cannot find the root filesystem with findmnt"
ROOT_MAJMIN=$FS_MAJMIN

# The filesystems that must stay writable: protect paths, state dir, working dir, TMPDIR.
split_csv "$opt_protect"
KEEP_PATHS=(${SPLIT[@]+"${SPLIT[@]}"} "$STATE_DIR" "$PWD" "${TMPDIR:-/tmp}")
KEEP_MAJMIN=()
for p in "${KEEP_PATHS[@]}"; do
	existing_ancestor "$p"
	if fs_of target "$REPLY"; then KEEP_MAJMIN+=("$FS_MAJMIN"); else KEEP_MAJMIN+=(''); fi
done

split_csv "$opt_mounts"
MOUNTS=("${SPLIT[@]}")
MOUNT_TYPE=()
MOUNT_SOURCE=()
MOUNT_MAJMIN=()
FREEZE_LIST=()
ANY_ZFS=0
for m in "${MOUNTS[@]}"; do
	[[ -d $m ]] || fail "mount $m does not exist or is not a directory"
	canon=$(readlink -f -- "$m") || fail "cannot resolve $m"
	fs_of mountpoint "$canon" || fail "$m is not a mount point: list the mount points of the data filesystems"
	if [[ $FS_TARGET == / || $FS_MAJMIN == "$ROOT_MAJMIN" ]]; then
		fail "refusing to freeze $m: it is the root filesystem /"
	fi
	for i in "${!KEEP_PATHS[@]}"; do
		if [[ -n ${KEEP_MAJMIN[i]} && ${KEEP_MAJMIN[i]} == "$FS_MAJMIN" ]]; then
			fail "refusing to freeze $m: its filesystem holds ${KEEP_PATHS[i]}, which must stay writable (SSM agent state and logs, --protect, --state-dir, the working directory, TMPDIR)"
		fi
	done
	for prev in ${MOUNT_MAJMIN[@]+"${MOUNT_MAJMIN[@]}"}; do
		if [[ $prev == "$FS_MAJMIN" ]]; then fail "mount $m is listed twice (or shares its filesystem with another listed mount)"; fi
	done
	fstype=$FS_TYPE
	if [[ $opt_filesystem != auto && $fstype != "$opt_filesystem" ]]; then
		fail "mount $m is $fstype, but --filesystem says $opt_filesystem"
	fi
	if [[ $fstype == zfs ]]; then
		ANY_ZFS=1
	elif [[ $FREEZABLE != *" $fstype "* ]]; then
		fail "mount $m has filesystem type $fstype, which cannot be frozen (supported: ext4, xfs, btrfs and other fsfreeze-capable filesystems, or zfs)"
	elif [[ $opt_consistency == freeze ]]; then
		FREEZE_LIST+=("$m")
	fi
	MOUNT_TYPE+=("$fstype")
	MOUNT_SOURCE+=("$FS_SOURCE")
	MOUNT_MAJMIN+=("$FS_MAJMIN")
done

# PGDATA, pg_wal and tablespaces must all be in the set, or a restore cannot start.
[[ -d $PGDATA_DIR ]] || fail "--pgdata $PGDATA_DIR is not a directory"
[[ -f $PGDATA_DIR/PG_VERSION ]] || fail "--pgdata $PGDATA_DIR holds no PG_VERSION: not a PostgreSQL data directory"
in_set() {
	local target majmin
	target=$(readlink -f -- "$1") || return 1
	fs_of target "$target" || return 1
	for majmin in "${MOUNT_MAJMIN[@]}"; do
		if [[ $majmin == "$FS_MAJMIN" ]]; then return 0; fi
	done
	return 1
}
DATA_DIRS=("$PGDATA_DIR")
if [[ -e $PGDATA_DIR/pg_wal ]]; then DATA_DIRS+=("$PGDATA_DIR/pg_wal"); fi
for t in "$PGDATA_DIR"/pg_tblspc/*; do
	if [[ -e $t ]]; then DATA_DIRS+=("$t"); fi
done
for d in "${DATA_DIRS[@]}"; do
	in_set "$d" || fail "$d is on none of --mounts ($opt_mounts): the snapshot set would not contain it"
done

if ((${#FREEZE_LIST[@]} > 0)); then
	((EUID == 0)) || fail "fsfreeze needs root: run as root"
	command -v fsfreeze >/dev/null 2>&1 || fail "fsfreeze is not installed (util-linux)"
fi
[[ -x $opt_pg_bin/psql ]] || fail "no psql in --pg-bin $opt_pg_bin"
if ((EUID == 0)) && [[ $opt_pg_user != root ]]; then
	id -u "$opt_pg_user" >/dev/null 2>&1 || fail "--pg-user $opt_pg_user is not a user on this host"
fi

command -v flock >/dev/null 2>&1 || fail "flock is not installed (util-linux)"

if [[ ! -d $STATE_DIR ]]; then
	if ! { mkdir -p -- "$STATE_DIR" && chmod 0700 -- "$STATE_DIR"; }; then fail "cannot create state dir $STATE_DIR"; fi
fi
ERRFILE="$STATE_DIR/.freeze-$$.err"

# One freeze or thaw at a time on this host: a thaw in progress finishes first, and from here to
# the exit no thaw can run.
take_lock "$STATE_DIR" "$FREEZE_LOCK_WAIT_SECONDS" ||
	fail "another pgfleet freeze or thaw still holds $STATE_DIR/$LOCK_NAME after ${FREEZE_LOCK_WAIT_SECONDS}s; nothing was changed"

if [[ -e $RECORD ]]; then
	rec=''
	IFS= read -r -d '' rec <"$RECORD" || true
	since='an unknown time'
	if [[ $rec =~ \"started_us\":([0-9]+) ]]; then
		since=$(date -u -d "@$((BASH_REMATCH[1] / 1000000))" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null) || since='an unknown time'
	fi
	wd=''
	if [[ $rec =~ \"watchdog_pid\":([0-9]+) ]]; then wd=", watchdog pid ${BASH_REMATCH[1]}"; fi
	fail "already frozen by pgfleet since $since (freeze record $RECORD$wd), run thaw first"
fi

# b) PostgreSQL must be up.
if [[ -x $opt_pg_bin/pg_isready ]]; then
	if ! out=$(as_pg "$opt_pg_bin/pg_isready" -h "$opt_pg_host" -p "$opt_port" -d postgres -t 5 2>&1 9>&-); then
		fail "postgresql is not running on port $opt_port (socket dir $opt_pg_host): $out"
	fi
elif ! out=$(pg_psql -c 'SELECT 1' 2>&1); then
	fail "postgresql is not running on port $opt_port (socket dir $opt_pg_host): $out"
fi

# c) Flush, checkpoint, and read where the snapshot starts.
flush_mounts
SQL="SELECT pg_is_in_recovery(), current_setting('server_version'), current_setting('server_version_num'),
  c.timeline_id, c.redo_lsn, c.redo_wal_file,
  CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END
  FROM pg_control_checkpoint() c"
if ! row=$(pg_psql -c 'CHECKPOINT' -c "$SQL" 2>"$ERRFILE"); then
	err=$(<"$ERRFILE")
	rm -f -- "$ERRFILE"
	fail "CHECKPOINT on port $opt_port failed: $err"
fi
rm -f -- "$ERRFILE"
IFS=$'\x1f' read -r PG_IN_RECOVERY PG_VERSION PG_VERSION_NUM PG_TIMELINE PG_REDO_LSN PG_REDO_WAL_FILE PG_SNAPSHOT_LSN <<<"$row" || true
if ! [[ ${PG_VERSION_NUM:-} =~ ^[0-9]+$ && ${PG_TIMELINE:-} =~ ^[0-9]+$ && ${PG_REDO_WAL_FILE:-} =~ ^[0-9A-F]{24}$ ]]; then
	printf -v q '%q' "$row"
	fail "unexpected answer from PostgreSQL: $q"
fi
IN_RECOVERY=false
if [[ $PG_IN_RECOVERY == t ]]; then IN_RECOVERY=true; fi

# d) A primary's snapshot carries standby.signal, so a restored copy never promotes itself.
STANDBY_SIGNAL_WRITTEN=false
if [[ $IN_RECOVERY == false && $opt_standby_signal == auto && ! -e $PGDATA_DIR/standby.signal ]]; then
	owner=$(stat -c %u:%g -- "$PGDATA_DIR")
	STANDBY_WRITTEN=1
	printf '%s\n' "$TOKEN" >"$PGDATA_DIR/$MARKER_NAME" || fail "cannot write $PGDATA_DIR/$MARKER_NAME"
	: >"$PGDATA_DIR/standby.signal" || fail "cannot write $PGDATA_DIR/standby.signal"
	chown -- "$owner" "$PGDATA_DIR/$MARKER_NAME" "$PGDATA_DIR/standby.signal" 2>/dev/null || true
	STANDBY_SIGNAL_WRITTEN=true
fi
flush_mounts

# e) Which volume each mount lives on.
MOUNTS_JSON=''
for i in "${!MOUNTS[@]}"; do
	m=${MOUNTS[i]}
	volume_id_of "${MOUNT_SOURCE[i]}"
	vol=$REPLY
	frozen=false
	for f in ${FREEZE_LIST[@]+"${FREEZE_LIST[@]}"}; do
		if [[ $f == "$m" ]]; then frozen=true; fi
	done
	json_str "$m"
	item="{\"path\":$REPLY"
	json_str "${MOUNT_TYPE[i]}"
	item+=",\"fstype\":$REPLY"
	json_str "${MOUNT_SOURCE[i]}"
	item+=",\"source\":$REPLY"
	json_str "$vol"
	item+=",\"volume_id\":$REPLY,\"frozen\":$frozen}"
	MOUNTS_JSON+=${MOUNTS_JSON:+,}$item
done

# f) Arm the watchdog before anything is frozen: a detached process in its own session (setsid: the
# SSM agent ends a command's whole process group, and the watchdog must outlive it). It waits for
# the countdown to start (the go file below, or this script's end), sleeps --watchdog-seconds,
# then takes the lock (a freeze in progress finishes first), thaws, removes our standby.signal
# and the record, and leaves the fired file for thaw to report.
# shellcheck disable=SC2016
WATCHDOG_SRC='
token=$1 seconds=$2 state_dir=$3 pgdata=$4 marker=$5 owner=$6 owner_start=$7 lock_wait=$8
shift 8
cd / || exit 1
ts() { date -u +%Y-%m-%dT%H:%M:%S.%6NZ; }
clock_us() { REPLY=${EPOCHREALTIME//[!0-9]/}; if [ -z "$REPLY" ]; then REPLY=$(date +%s%6N); fi; }
state() {
	printf "%s %s\n" "$token" "$*" >"$state_dir/watchdog.state.tmp" &&
		mv -f -- "$state_dir/watchdog.state.tmp" "$state_dir/watchdog.state"
}
owner_alive() {
	local s
	read -r s 2>/dev/null <"/proc/$owner/stat" || return 1
	s=${s##*) }
	set -f
	set -- $s
	set +f
	[ "$1" != Z ] && [ "$1" != X ] && [ "${20}" = "$owner_start" ]
}
go_time() {
	local t s
	read -r t s 2>/dev/null <"$state_dir/watchdog-go" || return 1
	[ "$t" = "$token" ] && [ -n "$s" ] || return 1
	REPLY=$s
}
state armed
echo "$(ts) watchdog $token armed: thaws ${seconds}s after the mounts are frozen, pid $$"
while :; do
	if go_time; then
		start=$REPLY
		echo "$(ts) the freeze reported its mounts frozen: counting ${seconds}s"
		break
	fi
	if ! owner_alive; then
		if go_time; then start=$REPLY; else clock_us; start=$REPLY; fi
		echo "$(ts) the freeze script ended: counting ${seconds}s from now at the latest"
		break
	fi
	sleep 0.05
done
deadline=$((start + seconds * 1000000))
state counting "$deadline"
clock_us
left=$((deadline - REPLY))
if [ "$left" -gt 0 ]; then sleep "$((left / 1000000)).$(printf %06d $((left % 1000000)))"; fi
clock_us
printf "%s %s\n" "$token" "$REPLY" >"$state_dir/watchdog-fired"
state fired "$REPLY"
echo "$(ts) watchdog $token fired: the host was not thawed in time"
exec 9>>"$state_dir/lock"
locked=1
if ! flock -w "$lock_wait" 9; then
	locked=0
	echo "$(ts) the lock is still held after ${lock_wait}s: thawing anyway"
fi
while :; do
	for m in "$@"; do
		if out=$(fsfreeze -u "$m" 2>&1); then echo "$(ts) thawed $m"; else echo "$(ts) $m: $out"; fi
	done
	if [ "$locked" = 1 ]; then break; fi
	# A freeze that held the lock may still complete: wait for it, then thaw once more.
	flock 9
	locked=1
done
if [ -n "$pgdata" ] && [ -f "$pgdata/$marker" ] && grep -qx -- "$token" "$pgdata/$marker"; then
	rm -f -- "$pgdata/standby.signal" && rm -f -- "$pgdata/$marker" && echo "$(ts) removed $pgdata/standby.signal"
fi
rec="$state_dir/frozen.json"
if [ -f "$rec" ] && grep -q "\"token\":\"$token\"" "$rec"; then
	rm -f -- "$rec" && echo "$(ts) removed $rec"
fi
state done
'
# The watchdog watches this script by pid and start time, so a reused pid cannot fool it.
read -r self_stat </proc/$$/stat
self_stat=${self_stat##*) }
read -r -a self_fields <<<"$self_stat"
SELF_START=${self_fields[19]}
setsid nohup bash -c "$WATCHDOG_SRC" "$WATCHDOG_TAG" "$TOKEN" "$opt_watchdog_seconds" "$STATE_DIR" \
	"$PGDATA_DIR" "$MARKER_NAME" "$$" "$SELF_START" "$WATCHDOG_LOCK_WAIT_SECONDS" ${FREEZE_LIST[@]+"${FREEZE_LIST[@]}"} \
	</dev/null >>"$STATE_DIR/watchdog.log" 2>&1 3>&- 9>&- &
WATCHDOG_PID=$!

json_str "$HOST_NAME"
host_json=$REPLY
json_str "$PGDATA_DIR"
pgdata_json=$REPLY
json_arr "${MOUNTS[@]}"
mounts_arr=$REPLY
json_arr ${FREEZE_LIST[@]+"${FREEZE_LIST[@]}"}
frozen_arr=$REPLY
printf '{"token":"%s","host":%s,"started_us":%s,"pgdata":%s,"mounts":%s,"frozen_mounts":%s,"standby_signal_written":%s,"watchdog_pid":%s,"watchdog_seconds":%s}\n' \
	"$TOKEN" "$host_json" "$STARTED_US" "$pgdata_json" "$mounts_arr" "$frozen_arr" \
	"$STANDBY_SIGNAL_WRITTEN" "$WATCHDOG_PID" "$((10#$opt_watchdog_seconds))" >"$RECORD.tmp" ||
	fail "cannot write $RECORD.tmp"
RECORD_WRITTEN=1
mv -f -- "$RECORD.tmp" "$RECORD" || fail "cannot write $RECORD"

# watchdog_state: REPLY = the watchdog's state word ("armed", "counting", "fired"...) when it
# is this freeze's watchdog, else "".
watchdog_state() {
	local t w
	REPLY=''
	read -r t w _ 2>/dev/null <"$STATE_DIR/watchdog.state" || return 0
	if [[ $t == "$TOKEN" ]]; then REPLY=$w; fi
}
# The watchdog must be running this freeze's code before anything is frozen.
for ((i = 0; i < 500; i++)); do
	watchdog_state
	if [[ $REPLY == armed ]] && watchdog_is_ours "$WATCHDOG_PID" "$TOKEN"; then break; fi
	if ! proc_alive "$WATCHDOG_PID"; then fail "the watchdog did not start (see $STATE_DIR/watchdog.log)"; fi
	sleep 0.01
done
watchdog_state
if [[ $REPLY != armed ]] || ! watchdog_is_ours "$WATCHDOG_PID" "$TOKEN"; then
	fail "the watchdog did not start within 5s (see $STATE_DIR/watchdog.log)"
fi

FROZE=false
if ((${#FREEZE_LIST[@]} > 0)); then FROZE=true; fi
ZFS=false
if ((ANY_ZFS)); then ZFS=true; fi
json_str "$PG_VERSION"
pgv_json=$REPLY
json_str "$PG_REDO_LSN"
redo_json=$REPLY
json_str "$PG_REDO_WAL_FILE"
redo_file_json=$REPLY
json_str "${PG_SNAPSHOT_LSN:-}"
snap_json=$REPLY
RESULT_PREFIX="{\"ok\":true,\"action\":\"$ACTION\",\"host\":$host_json,\"error\":\"\",\"token\":\"$TOKEN\",\"frozen\":$FROZE,\"zfs\":$ZFS,\"consistency\":\"$opt_consistency\",\"mounts\":[$MOUNTS_JSON],\"pg_version\":$pgv_json,\"pg_version_num\":$((10#$PG_VERSION_NUM)),\"in_recovery\":$IN_RECOVERY,\"timeline\":$((10#$PG_TIMELINE)),\"redo_lsn\":$redo_json,\"redo_wal_file\":$redo_file_json,\"snapshot_lsn\":$snap_json,\"standby_signal_written\":$STANDBY_SIGNAL_WRITTEN,\"watchdog_pid\":$WATCHDOG_PID,\"started_us\":$STARTED_US"

# g) Freeze, all mounts at once: the snapshot is taken only after every one is frozen, so their
# order does not matter (PostgreSQL never writes a data page ahead of its WAL), and writes stay
# blocked for the slowest freeze rather than the sum. The fsfreeze processes inherit the lock:
# if this script is killed while they run, a thaw still waits for them. Nothing slow from here
# to the exit.
FREEZE_STARTED_US=0
FROZEN_US=0
if [[ $FROZE == true ]]; then
	flush_mounts
	# fsfreeze errors go to an unlinked file, read back only on failure: nothing to clean up.
	exec 4>"$ERRFILE"
	rm -f -- "$ERRFILE"
	PIDS=()
	now_us
	FREEZE_STARTED_US=$REPLY
	FREEZING=1
	for m in "${FREEZE_LIST[@]}"; do
		fsfreeze -f "$m" 2>&4 3>&- 4>&- &
		PIDS+=("$!")
	done
	FAILED=''
	for i in "${!PIDS[@]}"; do
		if wait "${PIDS[i]}"; then
			FROZEN+=("${FREEZE_LIST[i]}")
		else
			FAILED+=" ${FREEZE_LIST[i]}"
		fi
	done
	now_us
	FROZEN_US=$REPLY
	FREEZING=0
	if [[ -n $FAILED ]]; then
		err=$(<"/proc/$$/fd/4") || err=''
		fail "fsfreeze -f failed on$FAILED: ${err//$'\n'/; }"
	fi
fi

# The watchdog's countdown starts now, when the mounts are frozen (a flush that outlasts
# --watchdog-seconds cannot make it fire before the freeze), and it must still be there.
now_us
COUNT_FROM_US=$REPLY
if ((FROZEN_US > 0)); then COUNT_FROM_US=$FROZEN_US; fi
WATCHDOG_DEADLINE_US=$((COUNT_FROM_US + 10#$opt_watchdog_seconds * 1000000))
# One small write, no rename: this is inside the frozen window, where a fork counts, and the
# watchdog reads the line whole or not at all (then it looks again 50 ms later).
printf '%s %s\n' "$TOKEN" "$COUNT_FROM_US" >"$STATE_DIR/watchdog-go" ||
	fail "cannot start the watchdog's countdown ($STATE_DIR/watchdog-go); thawed at once"
watchdog_state
if [[ $REPLY != armed && $REPLY != counting ]] || ! proc_alive "$WATCHDOG_PID" || ! watchdog_is_ours "$WATCHDOG_PID" "$TOKEN"; then
	fail "the watchdog (pid $WATCHDOG_PID) is not armed after the freeze (state ${REPLY:-unknown}); thawed at once"
fi

# h) The result.
json_arr ${FROZEN[@]+"${FROZEN[@]}"}
still_json=$REPLY
now_us
# shellcheck disable=SC2034 # read by fail_line and on_exit (common.sh)
RESULT_DONE=1
printf '%s,"still_frozen":%s,"watchdog_deadline_us":%s,"freeze_started_us":%s,"frozen_us":%s,"finished_us":%s}\n' \
	"$RESULT_PREFIX" "$still_json" "$WATCHDOG_DEADLINE_US" "$FREEZE_STARTED_US" "$FROZEN_US" "$REPLY" >&3
exit 0
} </dev/null
