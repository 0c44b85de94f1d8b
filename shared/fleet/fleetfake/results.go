package fleetfake

import "github.com/pgfleet/pgfleet/shared/hostscripts"

// Result lines a fake host runner may give: each is the shape of a line the real script prints
// in that case, so it passes hostscripts.ParseFreezeResult or ParseThawResult, which the
// host-script tests hold to the real scripts' output. Times are host-clock microseconds.

// FreezeToken is the token of the freezes these results describe.
const FreezeToken = "1773111599920000-4242"

// FreezeOK is freeze.sh's line after it froze the mounts marked Frozen, the freeze starting at
// freezeStartUS and taking 1.2 ms. With no mount marked Frozen it is the line of a freeze that
// froze nothing (crash consistency, ZFS).
func FreezeOK(freezeStartUS int64, mounts ...hostscripts.MountResult) hostscripts.FreezeResult {
	fr := hostscripts.FreezeResult{
		OK: true, Action: string(hostscripts.Freeze), Host: "pg", Token: FreezeToken, Consistency: "freeze", Mounts: mounts,
		PGVersion: "15", PGVersionNum: 150010, InRecovery: true, Timeline: 2,
		RedoLSN: "0/5000028", RedoWALFile: "000000020000000000000005", SnapshotLSN: "0/5000100",
		WatchdogPID: 4242, WatchdogDeadlineUS: freezeStartUS + 1_200 + 10_000_000,
		StartedUS: freezeStartUS - 80_000, FreezeStartedUS: freezeStartUS, FrozenUS: freezeStartUS + 1_200, FinishedUS: freezeStartUS + 1_500,
	}
	for _, m := range mounts {
		if m.Frozen {
			fr.StillFrozen = append(fr.StillFrozen, m.Path)
		}
	}
	fr.Frozen = len(fr.StillFrozen) > 0
	if !fr.Frozen {
		fr.FreezeStartedUS, fr.FrozenUS = 0, 0
	}
	return fr
}

// FreezeFailed is freeze.sh's line when it refused or failed, leaving stillFrozen frozen (its
// rollback could not thaw them).
func FreezeFailed(atUS int64, msg string, stillFrozen ...string) hostscripts.FreezeResult {
	return hostscripts.FreezeResult{OK: false, Action: string(hostscripts.Freeze), Host: "pg", Error: msg, Token: FreezeToken,
		Frozen: len(stillFrozen) > 0, StillFrozen: stillFrozen, StartedUS: atUS - 80_000, FinishedUS: atUS}
}

// ThawOK is thaw.sh's line after it thawed the given mounts at thawedUS, its write probe done.
func ThawOK(thawedUS int64, thawed ...string) hostscripts.ThawResult {
	return hostscripts.ThawResult{
		OK: true, Action: string(hostscripts.Thaw), Host: "pg", Thawed: thawed, WatchdogDisarmed: len(thawed) > 0, ProbeOK: true,
		StartedUS: thawedUS - 2_000, ThawStartedUS: thawedUS - 1_000, ThawedUS: thawedUS, FinishedUS: thawedUS + 3_000,
	}
}

// ThawFailed is thaw.sh's line when it could not thaw stillFrozen (or could not take the host's
// lock: then nothing was thawed).
func ThawFailed(atUS int64, msg string, stillFrozen ...string) hostscripts.ThawResult {
	return hostscripts.ThawResult{OK: false, Action: string(hostscripts.Thaw), Host: "pg", Error: msg, StillFrozen: stillFrozen,
		StartedUS: atUS - 2_000, FinishedUS: atUS}
}
