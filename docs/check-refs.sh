#!/usr/bin/env bash
# Checks that every section reference ("§N" or "§N.M") in the repository's sources and docs names
# a numbered heading that exists in docs/protocol.md or docs/architecture.md.
#
# Which document a "§" means: the last of `protocol.md` / `architecture.md` (or, inside
# docs/architecture.md, the word `protocol`) named on the same line or the two lines before it;
# inside docs/protocol.md and docs/architecture.md a bare "§" means the document itself. A "§"
# anywhere else with no document named nearby is an error, so no citation can point outside the
# repository again.
#
# Usage: bash docs/check-refs.sh   (from anywhere; exit status 1 lists the broken references)
set -euo pipefail
cd "$(dirname "$0")/.."

headings() { # the numbers of a document's numbered headings, one per line
    grep -E '^#{2,4} [0-9]+(\.[0-9]+)*\.? ' "$1" | awk '{ sub(/\.$/, "", $2); print $2 }'
}

protocol=$(headings docs/protocol.md | tr '\n' ' ')
architecture=$(headings docs/architecture.md | tr '\n' ' ')

files=$(git ls-files -co --exclude-standard -- '*.rs' '*.md' '*.sh' '*.toml' | grep -v -e '^target/' -e '^docs/check-refs.sh$' || true)

# shellcheck disable=SC2086
awk -v protocol=" $protocol " -v architecture=" $architecture " '
    function last_at(text, re,    n, at, pos) {
        n = text; at = 0; pos = 0
        while (match(n, re)) { pos += RSTART + RLENGTH - 1; at = pos; n = substr(n, RSTART + RLENGTH) }
        return at
    }
    FNR == 1 {
        self = ""
        if (FILENAME == "docs/protocol.md") self = "protocol"
        if (FILENAME == "docs/architecture.md") self = "architecture"
        prev1 = ""; prev2 = ""
    }
    {
        line = $0; rest = line; offset = 0; lastend = -1; lastdoc = ""
        while (match(rest, /§[0-9]+(\.[0-9]+)*/)) {
            mstart = RSTART; mlength = RLENGTH   # last_at() below runs match() too
            ref = substr(rest, RSTART + 1, RLENGTH - 1)
            sub(/^[^0-9]*/, "", ref)
            start = offset + mstart            # position of "§" in line
            prefix = substr(line, 1, start - 1)
            gap = lastend >= 0 ? substr(line, lastend + 1, start - 1 - lastend) : "x"
            doc = ""
            if (gap ~ /^[ ,–-]*(and )?$/) {
                doc = lastdoc                      # "§7–§9, §13": a chain keeps its document
            } else if (prefix ~ /protocol(\.md)?`? *$/) {
                doc = "protocol"
            } else if (prefix ~ /architecture(\.md)?`? *$/) {
                doc = "architecture"
            } else {
                context = prev2 "\n" prev1 "\n" prefix
                p = last_at(context, "protocol\\.md"); a = last_at(context, "architecture\\.md")
                if (p > a) doc = "protocol"; else if (a > p) doc = "architecture"; else doc = self
            }
            if (doc == "") {
                printf "%s:%d: §%s names no document (docs/protocol.md or docs/architecture.md)\n", FILENAME, FNR, ref
                bad++
            } else if (index(doc == "protocol" ? protocol : architecture, " " ref " ") == 0) {
                printf "%s:%d: §%s is not a heading of docs/%s.md\n", FILENAME, FNR, ref, doc
                bad++
            }
            checked++
            lastdoc = doc
            offset += mstart + mlength - 1
            lastend = offset
            rest = substr(rest, mstart + mlength)
        }
        prev2 = prev1; prev1 = line
    }
    END {
        if (bad) { printf "%d of %d section references are broken\n", bad, checked; exit 1 }
        printf "all %d section references resolve\n", checked
    }
' $files
