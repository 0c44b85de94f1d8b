package hostscripts

import (
	"strings"
	"testing"
)

func TestSplice(t *testing.T) {
	const common = "# common\nhelper() { :; }\n"
	tests := []struct {
		name, script, common, want, wantErr string
	}{
		{name: "in place", script: "#!/usr/bin/env bash\nset -eu\n# @common\nhelper\n", common: common,
			want: "#!/usr/bin/env bash\nset -eu\n# common\nhelper() { :; }\nhelper\n"},
		{name: "common without final newline", script: "a\n# @common\nb\n", common: "c", want: "a\nc\nb\n"},
		{name: "marker on the last line", script: "a\n# @common", common: common, want: "a\n" + common},
		{name: "crlf marker", script: "a\r\n# @common\r\nb\r\n", common: common, want: "a\r\n" + common + "b\r\n"},
		{name: "missing", script: "a\n# @common here\n#  @common\n", common: common, wantErr: "no \"# @common\" line"},
		{name: "twice", script: "# @common\nx\n# @common\n", common: common, wantErr: "more than one"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := splice("x", tc.script, tc.common)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("splice = %q, %v; want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("splice = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
