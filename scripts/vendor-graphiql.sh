#!/usr/bin/env bash
# Vendors a pinned GraphiQL (UMD build) and React 18 into assets/graphiql/, so that the
# GraphiQL page wxunion serves on GET /graphql needs nothing from the internet.
#
#   scripts/vendor-graphiql.sh            # the pinned versions below
#   GRAPHIQL_VERSION=3.9.0 scripts/vendor-graphiql.sh
#
# What it does:
#   1. `npm pack` each package from the npm registry into a temporary directory and
#      checks the tarball against the registry's published integrity (npm does).
#   2. Copies the browser files into assets/graphiql/:
#        react.production.min.js       react@REACT_VERSION      umd/react.production.min.js
#        react-dom.production.min.js   react-dom@REACT_VERSION  umd/react-dom.production.min.js
#        graphiql.min.js               graphiql@GRAPHIQL_VERSION graphiql.min.js (UMD: global GraphiQL)
#        graphiql.min.css              graphiql@GRAPHIQL_VERSION graphiql.min.css
#      and each package's LICENSE into assets/graphiql/licenses/.
#   3. Makes sure nothing is fetched from elsewhere: every `url(data:...)` in the CSS (the
#      Roboto and Fira Code fonts GraphiQL embeds, a few PNGs) is written out as its own file
#      under assets/graphiql/files/, named by its SHA-256, and the CSS points at it (so the
#      page's Content-Security-Policy can say font-src 'self' instead of allowing data:);
#      `//# sourceMappingURL=` comments are dropped (the maps are not vendored); the script
#      then fails if any `@import`, or any `url(...)` that is not one of those local files,
#      is left in the CSS.
#   4. Writes assets/graphiql/VERSIONS.md (package, version, licence from package.json,
#      sha256 and size of every file) and src/http/graphiql/vendored.rs, the table the
#      binary embeds with include_bytes!.
#
# Needs: npm, node, tar, sha256sum. Run it from anywhere; it works on the repository it is in.
set -euo pipefail

GRAPHIQL_VERSION="${GRAPHIQL_VERSION:-3.9.0}"
REACT_VERSION="${REACT_VERSION:-18.3.1}"

root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/assets/graphiql"
table="$root/src/http/graphiql/vendored.rs"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

for tool in npm node tar sha256sum; do
  command -v "$tool" >/dev/null || { echo "vendor-graphiql: $tool is required" >&2; exit 1; }
done

echo "vendor-graphiql: graphiql@$GRAPHIQL_VERSION react@$REACT_VERSION react-dom@$REACT_VERSION"
(
  cd "$tmp"
  npm pack --silent --json "graphiql@$GRAPHIQL_VERSION" "react@$REACT_VERSION" "react-dom@$REACT_VERSION" >pack.json
  for tgz in "graphiql-$GRAPHIQL_VERSION.tgz" "react-$REACT_VERSION.tgz" "react-dom-$REACT_VERSION.tgz"; do
    pkg="${tgz%-*}"
    mkdir "$pkg"
    tar -xzf "$tgz" -C "$pkg" --strip-components=1
  done
)

need() { [ -f "$1" ] || { echo "vendor-graphiql: $1 is missing from the package" >&2; exit 1; }; }
need "$tmp/graphiql/graphiql.min.js"
need "$tmp/graphiql/graphiql.min.css"
need "$tmp/react/umd/react.production.min.js"
need "$tmp/react-dom/umd/react-dom.production.min.js"

rm -rf "$out"
mkdir -p "$out/files" "$out/licenses"
cp "$tmp/react/umd/react.production.min.js" "$out/"
cp "$tmp/react-dom/umd/react-dom.production.min.js" "$out/"
cp "$tmp/graphiql/graphiql.min.js" "$out/"
cp "$tmp/graphiql/graphiql.min.css" "$out/"
for pkg in graphiql react react-dom; do
  cp "$tmp/$pkg/LICENSE" "$out/licenses/$pkg-LICENSE"
done

# Steps 3 and 4 in node: it parses package.json and rewrites the CSS reliably.
OUT="$out" TABLE="$table" TMP="$tmp" node <<'NODE'
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { OUT, TABLE, TMP } = process.env;
const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

// Drop source map references: the maps are not vendored, and a browser would ask for them.
for (const f of ['graphiql.min.js', 'graphiql.min.css', 'react.production.min.js', 'react-dom.production.min.js']) {
  const p = path.join(OUT, f);
  const text = fs.readFileSync(p, 'utf8');
  fs.writeFileSync(p, text.replace(/\n?\/[/*]# sourceMappingURL=[^\n]*?(\*\/)?\s*$/, '\n'));
}

// Inline data: URLs in the CSS become files of their own.
const ext = { 'font/woff2': 'woff2', 'font/woff': 'woff', 'image/png': 'png', 'image/svg+xml': 'svg', 'image/gif': 'gif' };
const cssPath = path.join(OUT, 'graphiql.min.css');
let css = fs.readFileSync(cssPath, 'utf8');
let extracted = 0;
css = css.replace(/url\((["']?)data:([a-z0-9.+\/-]+);base64,([A-Za-z0-9+\/=]+)\1\)/g, (_, _q, mime, data) => {
  if (!ext[mime]) throw new Error(`vendor-graphiql: unexpected data: URL of type ${mime} in the CSS`);
  const bytes = Buffer.from(data, 'base64');
  const name = `${sha256(bytes).slice(0, 16)}.${ext[mime]}`;
  fs.writeFileSync(path.join(OUT, 'files', name), bytes);
  extracted++;
  return `url(files/${name})`;
});
if (/data:/.test(css)) throw new Error('vendor-graphiql: a data: URL is left in the CSS');
if (/@import/i.test(css)) throw new Error('vendor-graphiql: the CSS has an @import');
for (const m of css.matchAll(/url\(([^)]*)\)/g)) {
  if (!/^files\/[0-9a-f]{16}\.[a-z0-9]+$/.test(m[1])) throw new Error(`vendor-graphiql: the CSS refers to ${m[1]}`);
}
fs.writeFileSync(cssPath, css);
console.log(`vendor-graphiql: ${extracted} inline fonts and images moved out of graphiql.min.css`);

// Every file, its package, size and hash.
const pkg = (name) => JSON.parse(fs.readFileSync(path.join(TMP, name, 'package.json'), 'utf8'));
const pkgs = { graphiql: pkg('graphiql'), react: pkg('react'), 'react-dom': pkg('react-dom') };
const integrity = {};
for (const p of JSON.parse(fs.readFileSync(path.join(TMP, 'pack.json'), 'utf8'))) integrity[p.name] = p.integrity;
const origin = {
  'react.production.min.js': ['react', 'umd/react.production.min.js'],
  'react-dom.production.min.js': ['react-dom', 'umd/react-dom.production.min.js'],
  'graphiql.min.js': ['graphiql', 'graphiql.min.js'],
  'graphiql.min.css': ['graphiql', 'graphiql.min.css'],
};
const files = Object.keys(origin).concat(
  fs.readdirSync(path.join(OUT, 'files')).sort().map((f) => `files/${f}`),
);
const rows = files.map((f) => {
  const bytes = fs.readFileSync(path.join(OUT, f));
  const [p, from] = origin[f] || ['graphiql', 'graphiql.min.css (inline data: URL)'];
  return { f, p, from, size: bytes.length, sha: sha256(bytes) };
});
const licences = fs.readdirSync(path.join(OUT, 'licenses')).sort().map((f) => {
  const bytes = fs.readFileSync(path.join(OUT, 'licenses', f));
  return { f: `licenses/${f}`, size: bytes.length, sha: sha256(bytes) };
});

const md = [
  '# Vendored GraphiQL',
  '',
  'Written by `scripts/vendor-graphiql.sh`; do not edit by hand. wxunion embeds these files',
  '(`include_bytes!`, see `src/http/graphiql/vendored.rs`) and serves them under `/graphiql/`,',
  'so GraphiQL on `GET /graphql` works with no internet access.',
  '',
  '| package | version | licence (package.json) | npm tarball integrity |',
  '| --- | --- | --- | --- |',
  ...Object.values(pkgs).map((j) => `| ${j.name} | ${j.version} | ${j.license} | \`${integrity[j.name]}\` |`),
  '',
  'Changes made to the published files:',
  '',
  '- `sourceMappingURL` comments removed (the source maps are not vendored).',
  '- `graphiql.min.css` embeds its fonts (Roboto, Fira Code) and a few PNGs as `data:` URLs;',
  '  each is written to `files/<first 16 hex of its sha256>.<ext>` and the CSS refers to that',
  '  file instead, so the page needs no `data:` source in its Content-Security-Policy. The',
  '  fonts are therefore the ones GraphiQL ships, served by wxunion; nothing comes from',
  '  Google Fonts or a CDN.',
  '',
  '| file | from | size (bytes) | sha256 |',
  '| --- | --- | ---: | --- |',
  ...rows.map((r) => `| \`${r.f}\` | ${pkgs[r.p].name}@${pkgs[r.p].version} \`${r.from}\` | ${r.size} | \`${r.sha}\` |`),
  ...licences.map((r) => `| \`${r.f}\` | LICENSE of the package | ${r.size} | \`${r.sha}\` |`),
  '',
].join('\n');
fs.writeFileSync(path.join(OUT, 'VERSIONS.md'), md);

// The table the binary embeds.
const type = (f) => {
  if (f.endsWith('.js')) return 'text/javascript; charset=utf-8';
  if (f.endsWith('.css')) return 'text/css; charset=utf-8';
  if (f.endsWith('.woff2')) return 'font/woff2';
  if (f.endsWith('.woff')) return 'font/woff';
  if (f.endsWith('.png')) return 'image/png';
  if (f.endsWith('.svg')) return 'image/svg+xml';
  if (f.endsWith('.gif')) return 'image/gif';
  throw new Error(`vendor-graphiql: no content type for ${f}`);
};
const rs = [
  '//! Written by `scripts/vendor-graphiql.sh`; do not edit by hand. The vendored GraphiQL',
  '//! files (see `assets/graphiql/VERSIONS.md`), embedded in the binary.',
  '',
  'use super::Asset;',
  '',
  '/// The vendored GraphiQL release.',
  `pub const GRAPHIQL_VERSION: &str = "${pkgs.graphiql.version}";`,
  '/// The vendored React (and React DOM) release.',
  `pub const REACT_VERSION: &str = "${pkgs.react.version}";`,
  '',
  '/// Every vendored file, by its path under `/graphiql/`.',
  'pub const FILES: &[Asset] = &[',
  ...rows.map((r) => [
    '    Asset {',
    `        path: "${r.f}",`,
    `        content_type: "${type(r.f)}",`,
    `        bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/graphiql/${r.f}")),`,
    '    },',
  ].join('\n')),
  '];',
  '',
].join('\n');
fs.mkdirSync(path.dirname(TABLE), { recursive: true });
fs.writeFileSync(TABLE, rs);
for (const r of rows) console.log(`  ${String(r.size).padStart(8)}  ${r.f}`);
NODE

if command -v rustfmt >/dev/null; then
  rustfmt --edition 2024 "$table"
fi
echo "vendor-graphiql: wrote $out and $table"
