#!/usr/bin/env bash
# host-check.sh PYRO: for each chat host whose CLI is on PATH (claude, codex,
# opencode), register PYRO with it through `pyro host connect`, once for the
# user and once for a project (--project), each time in a throwaway home and
# project directory, and check that the host's own CLI lists pyro: connected,
# where the CLI starts the server to check (Claude Code's user scope,
# OpenCode). It prints one line per host, and exits 1 if any host failed.
#
# `make host-check` runs it. It is not part of `make test`: CI has no host
# CLIs. It never logs in to a host's service: listing servers needs none.
#
# Two things a host asks of a person, not of pyro, are done here as that
# person would: Codex reads a project's .codex/config.toml only in a project
# the user trusts (the throwaway home's config trusts the throwaway
# project), and Claude Code asks the user to approve a project's .mcp.json
# servers (so "pending approval" is the expected state there).
set -uo pipefail

if [ $# -ne 1 ] || [ ! -x "$1" ]; then
	echo "usage: $0 PATH-TO-PYRO" >&2
	exit 2
fi
pyro=$(realpath "$1")
# Not under /tmp: Codex refuses to write its helpers below a temp dir and
# says so on every run.
work=$(mktemp -d "$(dirname "$pyro")/host-check.XXXXXX")
trap 'rm -rf "$work"' EXIT

# sandbox DIR CMD...: run CMD in DIR/proj with DIR/home as the home, and no
# variable that points a host or pyro at the real one.
sandbox() {
	local d=$1
	shift
	(cd "$d/proj" && env -u CODEX_HOME -u CLAUDE_CONFIG_DIR -u PYRO_STATE_DIR -u XDG_RUNTIME_DIR \
		HOME="$d/home" XDG_CONFIG_HOME="$d/home/.config" XDG_DATA_HOME="$d/home/.local/share" \
		XDG_STATE_HOME="$d/home/.local/state" XDG_CACHE_HOME="$d/home/.cache" \
		timeout 120 "$@")
}

# fresh NAME: a new throwaway home and project; prints its directory.
fresh() {
	local d="$work/$1"
	mkdir -p "$d/home" "$d/proj"
	echo "$d"
}

# strip: drop ANSI escapes (OpenCode colours its list even into a pipe).
strip() { sed 's/\x1b\[[0-9;]*[A-Za-z]//g'; }

failed=0

# scope HOST DIR LISTCMD PATTERN [connect args...]: connect, list, and match
# the list against PATTERN (an extended regex, in which PYRO stands for the
# binary's path). Prints the matching line, or what both commands printed
# and returns 1.
scope() {
	local host=$1 d=$2 list=$3 pattern=$4
	shift 4
	local c l
	if ! c=$(sandbox "$d" "$pyro" host connect "$host" "$@" 2>&1); then
		echo "pyro host connect $host${*:+ $*}: $c"
		return 1
	fi
	l=$(sandbox "$d" $list 2>&1 | strip)
	l=${l//"$pyro"/PYRO}
	if ! grep -Eq -- "$pattern" <<<"$l"; then
		printf '%s\n%s:\n%s\n' "pyro host connect $host${*:+ $*}: $c" "$list" "$l"
		return 1
	fi
	grep -E -- "$pattern" <<<"$l" | head -n1 | sed 's/^[[:space:]│●]*//' | tr -s " "
}

# check HOST CLI NPM-PACKAGE: both scopes of one host.
check() {
	local host=$1 cli=$2 pkg=$3
	if ! command -v "$cli" >/dev/null; then
		printf '%-12s not installed (skipped): npm install -g %s puts %s on PATH\n' "$host" "$pkg" "$cli"
		return
	fi
	local v d user project pattern
	v=$("$cli" --version 2>/dev/null | head -n1)
	case $host in
	claude-code)
		d=$(fresh claude-user)
		user=$(scope "$host" "$d" "claude mcp list" "^pyro: PYRO mcp serve - ✔ Connected") || { fail "$host" "$v" "$user"; return; }
		d=$(fresh claude-project)
		project=$(scope "$host" "$d" "claude mcp list" "^pyro: PYRO mcp serve - (✔ Connected|⏸ Pending approval)" --project "$d/proj") ||
			{ fail "$host" "$v" "$project"; return; }
		;;
	codex)
		# Codex does not start servers to list them: enabled is all it says.
		pattern="^pyro +PYRO +mcp serve .* enabled "
		d=$(fresh codex-user)
		user=$(scope "$host" "$d" "codex mcp list" "$pattern") || { fail "$host" "$v" "$user"; return; }
		d=$(fresh codex-project)
		mkdir -p "$d/home/.codex"
		printf '[projects."%s"]\ntrust_level = "trusted"\n' "$d/proj" >"$d/home/.codex/config.toml"
		project=$(scope "$host" "$d" "codex mcp list" "$pattern" --project "$d/proj") || { fail "$host" "$v" "$project"; return; }
		;;
	opencode)
		pattern="✓ pyro connected"
		d=$(fresh opencode-user)
		user=$(scope "$host" "$d" "opencode mcp list" "$pattern") || { fail "$host" "$v" "$user"; return; }
		d=$(fresh opencode-project)
		project=$(scope "$host" "$d" "opencode mcp list" "$pattern" --project "$d/proj") || { fail "$host" "$v" "$project"; return; }
		;;
	esac
	printf '%-12s ok (%s): user scope: %s; project scope: %s\n' "$host" "$v" "$user" "$project"
}

# fail HOST VERSION OUTPUT: the FAIL line, with what the commands printed.
fail() {
	failed=1
	printf '%-12s FAIL (%s):\n%s\n' "$1" "$2" "$(sed 's/^/    /' <<<"$3")"
}

check claude-code claude @anthropic-ai/claude-code
check codex codex @openai/codex
check opencode opencode opencode-ai
exit $failed
