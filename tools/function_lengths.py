#!/usr/bin/env python3
"""Lengths of the production C++ functions of the tree, for the rule "no
production function over 80 lines".

Each function is measured twice: as written, and after clang-format (Google
style) at --columns, so long lines and several statements on one line cannot
hide length. Production: git-tracked .cc/.h files except *_test.cc,
*_fuzz.cc and anything under bench/, tests/, fuzz/, examples/, third_party/
or a testing/ folder. Function extents come from universal-ctags.

  tools/function_lengths.py                 # over 80 lines at 120 columns
  tools/function_lengths.py --columns 80    # stricter width

Prints the functions over --limit and the five longest; exits 1 when any is
over. Needs universal-ctags and clang-format (tools/install_deps.sh).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

EXCLUDED_TOP = ('bench', 'tests', 'fuzz', 'examples', 'third_party')


def production(path):
    parts = path.split('/')
    name = parts[-1]
    if name.endswith('_test.cc') or name.endswith('_fuzz.cc'):
        return False
    return parts[0] not in EXCLUDED_TOP and 'testing' not in parts


def functions(path):
    """(qualified name, occurrence), first line, length; in file order."""
    out = subprocess.run(['ctags', '--output-format=json', '--fields=+ne', '--sort=no', '--kinds-c++=f',
                          '--language-force=C++', '-o', '-', path], capture_output=True, text=True, check=True).stdout
    seen = {}
    for line in out.splitlines():
        tag = json.loads(line)
        if 'end' not in tag:
            continue
        scope = tag.get('scope', '')
        # Anonymous namespaces get a per-file hash; the formatted copy is another file.
        name = re.sub(r'__anon[0-9a-f]+', '__anon', (scope + '::' if scope else '') + tag['name'])
        seen[name] = seen.get(name, 0) + 1
        yield (name, seen[name]), tag['line'], tag['end'] - tag['line'] + 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repo', default='.')
    parser.add_argument('--limit', type=int, default=80)
    parser.add_argument('--columns', type=int, default=120)
    args = parser.parse_args()
    files = subprocess.run(['git', '-C', args.repo, 'ls-files', '*.cc', '*.h'], capture_output=True, text=True,
                           check=True).stdout.split()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in filter(production, files):
            src = os.path.join(args.repo, path)
            formatted = os.path.join(tmp, os.path.basename(path))
            with open(formatted, 'w') as f:
                subprocess.run(['clang-format', f'--style={{BasedOnStyle: Google, ColumnLimit: {args.columns}}}', src],
                               stdout=f, check=True)
            reflowed = {key: length for key, _, length in functions(formatted)}
            for key, line, length in functions(src):
                wrapped = reflowed.get(key, length)
                rows.append((max(length, wrapped), length, wrapped, f'{path}:{line}', key[0]))
    rows.sort(reverse=True)
    over = [r for r in rows if r[0] > args.limit]
    print(f'functions over {args.limit} lines (as written / at {args.columns} columns): {len(over)}')
    for _, length, wrapped, where, name in over:
        print(f'  {where} {name}: {length} / {wrapped}')
    print('longest:')
    for _, length, wrapped, where, name in rows[:5]:
        print(f'  {where} {name}: {length} / {wrapped}')
    return 1 if over else 0


if __name__ == '__main__':
    sys.exit(main())
