# shellcheck shell=bash disable=SC2034 # the variables set here are for the including script
# common.sh: what freeze.sh and thaw.sh share. It never runs on its own: hostscripts.Source
# splices this whole file into each script at its "# @common" line, so every script stays one
# self-contained text (one SSM document; bash -s locally). The including script sets ACTION
# before it and defines fail (called by check) after it.

readonly RECORD_NAME=frozen.json
readonly MARKER_NAME=.pgfleet-standby-signal
readonly WATCHDOG_TAG=pgfleet-watchdog
# The lock that serializes freeze, thaw and a firing watchdog on one host (flock on fd 9). The
# value patterns (RE_*) and lock waits come from hostscripts.Source, which writes them above.
# shellcheck disable=SC2034 # FIRED_NAME: thaw reads it; the watchdog writes the same name
readonly LOCK_NAME=lock FIRED_NAME=watchdog-fired

# now_us: REPLY = host-clock microseconds since the epoch.
now_us() {
	if [[ -n ${EPOCHREALTIME:-} ]]; then
		REPLY=${EPOCHREALTIME//[!0-9]/}
	else
		REPLY=$(date +%s%6N)
	fi
}

now_us
STARTED_US=$REPLY
HOST_NAME=${HOSTNAME:-$(uname -n)}
RESULT_DONE=0
LAST_ERR=''

log() { printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)" "$ACTION" "$*" >&2; }

# json_str S: REPLY = S as a JSON string literal.
json_str() {
	local s=$1 out='' c code i
	s=${s//\\/\\\\}
	s=${s//\"/\\\"}
	s=${s//$'\n'/\\n}
	s=${s//$'\r'/\\r}
	s=${s//$'\t'/\\t}
	if [[ $s == *[$'\001'-$'\037']* ]]; then
		for ((i = 0; i < ${#s}; i++)); do
			c=${s:i:1}
			if [[ $c == [$'\001'-$'\037'] ]]; then
				printf -v code '\\u%04x' "'$c"
				out+=$code
			else
				out+=$c
			fi
		done
		s=$out
	fi
	REPLY="\"$s\""
}

# json_arr S...: REPLY = the strings as a JSON array.
json_arr() {
	local out='' s
	for s in "$@"; do
		json_str "$s"
		out+=${out:+,}$REPLY
	done
	REPLY="[$out]"
}

# split_csv S: SPLIT = the comma-separated items of S (empty items dropped).
split_csv() {
	local rest=$1 item
	SPLIT=()
	while [[ -n $rest ]]; do
		item=${rest%%,*}
		if [[ $rest == *,* ]]; then rest=${rest#*,}; else rest=''; fi
		if [[ -n $item ]]; then SPLIT+=("$item"); fi
	done
}

# watchdog_is_ours PID TOKEN: the process is a pgfleet watchdog armed with TOKEN (freeze: the one
# it started; thaw: the recorded freeze's).
watchdog_is_ours() {
	local args=()
	[[ $1 =~ ^[1-9][0-9]*$ && -r /proc/$1/cmdline ]] || return 1
	# mapfile, not a pipe through tr: this runs inside the frozen window, where a fork counts.
	mapfile -d '' args 2>/dev/null <"/proc/$1/cmdline" || return 1
	[[ " ${args[*]} " == *" $WATCHDOG_TAG "* && " ${args[*]} " == *" $2 "* ]]
}

# proc_alive PID: the process exists and has not exited (an unreaped zombie has).
proc_alive() {
	local stat=''
	[[ $1 =~ ^[1-9][0-9]*$ && -r /proc/$1/stat ]] || return 1
	read -r stat <"/proc/$1/stat" 2>/dev/null || return 1
	stat=${stat##*) }
	[[ -n $stat && ${stat%% *} != [ZX] ]]
}

# take_lock STATE_DIR SECONDS: open STATE_DIR/lock on fd 9 and hold an exclusive flock on it,
# waiting at most SECONDS. Children that inherit fd 9 keep the lock: run long-lived children
# with 9>&- unless they must hold it (fsfreeze -f does: a freeze still in progress keeps a thaw
# out even when this script is killed).
take_lock() {
	exec 9>>"$1/$LOCK_NAME" || return 1
	flock -w "$2" 9
}

# setopt VAR VALUE: VAR = VALUE unless VALUE is empty (then the default stays).
setopt() {
	if [[ -n $2 ]]; then printf -v "$1" '%s' "$2"; fi
}

# check NAME VALUE REGEX: fail unless VALUE (of flag --NAME) matches REGEX.
check() {
	local q
	if ! [[ $2 =~ $3 ]]; then
		printf -v q '%q' "$2"
		fail "--$1 $q is not allowed (must match $3)"
	fi
}

# fail_line MESSAGE [EXTRA]: print the one ok:false result line (EXTRA: more JSON members, each
# starting with a comma), once, and exit 1. Each script's fail() undoes its own work first.
fail_line() {
	local msg=$1 extra=${2:-} host fin
	log "failed: $msg"
	now_us
	fin=$REPLY
	json_str "$HOST_NAME"
	host=$REPLY
	json_str "$msg"
	if ((RESULT_DONE == 0)); then
		RESULT_DONE=1
		printf '{"ok":false,"action":"%s","host":%s,"error":%s%s,"started_us":%s,"finished_us":%s}\n' \
			"$ACTION" "$host" "$REPLY" "$extra" "$STARTED_US" "$fin" >&3
	fi
	exit 1
}

# shellcheck disable=SC2317 # invoked by the EXIT trap each script sets once fail() exists
on_exit() {
	local rc=$?
	if ((RESULT_DONE == 0)); then
		fail "unexpected failure (exit status $rc)${LAST_ERR:+ at $LAST_ERR}"
	fi
}
