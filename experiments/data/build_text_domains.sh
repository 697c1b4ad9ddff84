#!/usr/bin/env bash
# Rebuilds experiments/data/text-domains.h5, the shipped multi-domain text corpus, from pinned
# Debian 12 (bookworm) packages. Reproducible: exact package versions (refused on mismatch),
# fixed file lists, and every domain's text sha256 pinned below (refused on mismatch); the
# HDF5 file stores no timestamps. Run by `make corpus`; not part of `make test`.
#
#   experiments/data/build_text_domains.sh [OUT.h5]     (default: experiments/data/text-domains.h5)
#
# Needs apt-get (any user; the packages are only downloaded, never installed), dpkg-deb, gzip,
# and a Python with numpy and h5py (MOE_RUN_PYTHON, default ~/.cache/moe-run/venv/bin/python,
# made by `make venv`). Domains, sources and licences: experiments/data/README.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/text-domains.h5}"
python="${MOE_RUN_PYTHON:-$HOME/.cache/moe-run/venv/bin/python}"

# package=version, exactly as `apt-get download` takes them.
pins=(
  "bible-kjv=4.38"
  "bible-kjv-text=4.38"
  "dict-jargon=4.4.7-3.1"
  "dict-gcide=0.48.5+nmu2"
  "libpython3.11-stdlib=3.11.2-6+deb12u9"
)

# The text of each domain, sha256 of its bytes (checked by write_text_domains.py).
sha_bible=82fa5f3788c6a9a010fb128a0f0bf588984b5888a82058520620eded59b033ea
sha_jargon=6c8118c277d0b00736d406d4941b77b69932d6ab125f7179ff88fe12939cc19e
sha_dictionary=fa3657166025c1aa8f33d0b57c7c85e7cb7f75816a74c13de0f1431a4c003b31
sha_python=4220af3e374f1a348331661e5e47b1c6d54d3d2ef2d801585e68c256953a1c6c

# Python standard library modules (Lib/<name>, libpython3.11-stdlib), concatenated in this order.
python_files=(
  aifc.py antigravity.py asynchat.py asyncore.py bdb.py bz2.py cProfile.py cgi.py cgitb.py
  chunk.py cmd.py code.py codeop.py colorsys.py contextvars.py crypt.py dataclasses.py
  decimal.py difflib.py doctest.py fileinput.py fractions.py ftplib.py getpass.py gettext.py
  graphlib.py gzip.py hmac.py imaplib.py imghdr.py lzma.py mailbox.py mailcap.py mimetypes.py
  modulefinder.py netrc.py nntplib.py ntpath.py nturl2path.py numbers.py pdb.py pickletools.py
  pipes.py plistlib.py poplib.py pprint.py profile.py pstats.py pty.py pyclbr.py pydoc.py
  queue.py rlcompleter.py sched.py secrets.py shelve.py shlex.py shutil.py smtpd.py smtplib.py
  sndhdr.py socketserver.py statistics.py sunau.py symtable.py
)
# GCIDE: the first gcide_bytes bytes of the decompressed dictionary, cut back to the end of the
# last complete entry (the last blank line) before that point.
gcide_bytes=1600000

die() { echo "build_text_domains: error: $*" >&2; exit 2; }
[ -d "$(dirname "$out")" ] || die "$(dirname "$out"): no such folder for the output"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"   # absolute: the build runs in a temporary folder
for tool in apt-get dpkg-deb gzip sha256sum; do
  command -v "$tool" >/dev/null || die "needs $tool (a Debian system)"
done
[ -x "$python" ] || die "no Python at $python: run \`make venv\` or set MOE_RUN_PYTHON"
"$python" -c 'import h5py, numpy' 2>/dev/null || die "$python cannot import h5py and numpy: run \`make venv\`"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

for pin in "${pins[@]}"; do
  package="${pin%%=*}" version="${pin#*=}"
  if ! apt-get download -q "$pin" >download.log 2>&1; then
    die "cannot download $package version $version (apt-get download $pin failed: $(grep -m1 -E '^E:' download.log || tail -n1 download.log)). The corpus pins exact versions: if this version left the archive, update the pin and the sha256 values in $here/build_text_domains.sh on purpose (run \`apt-get update\` first if the package lists are old)"
  fi
  deb=$(ls "${package}"_*.deb)
  found="$(dpkg-deb -f "$deb" Version)"
  [ "$found" = "$version" ] || die "$package: downloaded version $found, pinned $version"
  dpkg-deb -x "$deb" "root-$package"
done

mkdir -p text
# King James Bible, Genesis 1:1 to Revelation 22:21, as the pinned `bible` program prints it.
"root-bible-kjv/usr/bin/bible" -p "root-bible-kjv-text/usr/lib/" "Gen1:1-Rev22:21" > text/bible
# The Jargon File 4.4.7, the whole dictd text.
gzip -dc "root-dict-jargon/usr/share/dictd/jargon.dict.dz" > text/jargon
# GCIDE (Webster's Revised Unabridged Dictionary, 1913, plus additions): its first entries.
"$python" - "root-dict-gcide/usr/share/dictd/gcide.dict.dz" "$gcide_bytes" text/dictionary <<'PY'
import gzip, sys
with gzip.open(sys.argv[1], "rb") as f:
    data = f.read(int(sys.argv[2]))
end = data.rfind(b"\n\n")
if end < 0:
    sys.exit("build_text_domains: error: no blank line in the GCIDE head")
open(sys.argv[3], "wb").write(data[:end + 2])
PY
# Python standard library source.
for f in "${python_files[@]}"; do
  cat "root-libpython3.11-stdlib/usr/lib/python3.11/$f"
done > text/python

for d in bible jargon dictionary python; do
  echo "$d: $(wc -c < "text/$d") bytes, sha256 $(sha256sum "text/$d" | cut -d' ' -f1)"
done

files_json() { "$python" -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@"; }
cat > manifest.json <<JSON
{
  "description": "moe-run's shipped multi-domain text corpus: four genres (scripture, hacker lexicon, 1913 dictionary, Python code) from pinned Debian 12 packages; built by experiments/data/build_text_domains.sh",
  "domains": [
    {"name": "bible", "text": "text/bible", "sha256": "$sha_bible",
     "package": "bible-kjv-text", "version": "4.38",
     "licence": "public domain (the King James Version text; its copyright expired)",
     "source": "Debian packages bible-kjv 4.38 (the bible program) and bible-kjv-text 4.38 (its data); bible -p DATA Gen1:1-Rev22:21",
     "genre": "scripture (Early Modern English prose and verse)",
     "description": "The King James Bible, Genesis 1:1 to Revelation 22:21, chapter headings and numbered verses as the bible program prints them",
     "files": ["usr/lib/bible.data"]},
    {"name": "jargon", "text": "text/jargon", "sha256": "$sha_jargon",
     "package": "dict-jargon", "version": "4.4.7-3.1",
     "licence": "public domain (the Jargon File)",
     "source": "Debian package dict-jargon 4.4.7-3.1, usr/share/dictd/jargon.dict.dz decompressed",
     "genre": "hacker lexicon (informal modern English essays)",
     "description": "The Jargon File 4.4.7 (29 Dec 2003), the whole dictd text",
     "files": ["usr/share/dictd/jargon.dict.dz"]},
    {"name": "dictionary", "text": "text/dictionary", "sha256": "$sha_dictionary",
     "package": "dict-gcide", "version": "0.48.5+nmu2",
     "licence": "GPL-2.0-or-later (GCIDE)",
     "source": "Debian package dict-gcide 0.48.5+nmu2, usr/share/dictd/gcide.dict.dz decompressed, first $gcide_bytes bytes cut back to the last blank line",
     "genre": "dictionary (Webster's 1913: definitions, etymologies, citations)",
     "description": "GCIDE, the GNU Collaborative International Dictionary of English (Webster's Revised Unabridged Dictionary 1913 plus additions), its first entries",
     "files": ["usr/share/dictd/gcide.dict.dz"]},
    {"name": "python", "text": "text/python", "sha256": "$sha_python",
     "package": "libpython3.11-stdlib", "version": "3.11.2-6+deb12u9",
     "licence": "PSF-2.0 (Python Software Foundation License Version 2)",
     "source": "Debian package libpython3.11-stdlib 3.11.2-6+deb12u9, usr/lib/python3.11/<file>, concatenated in the listed order",
     "genre": "source code (Python)",
     "description": "Python 3.11 standard library modules",
     "files": $(files_json "${python_files[@]}")}
  ]
}
JSON

"$python" "$here/write_text_domains.py" manifest.json "$out"
echo "wrote $out ($(wc -c < "$out") bytes, sha256 $(sha256sum "$out" | cut -d' ' -f1))"
