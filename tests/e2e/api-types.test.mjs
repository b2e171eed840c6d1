// The engine's generated TypeScript declarations (www/pkg/gemma_web.d.ts, from `make wasm`) are typed: they compile
// under --strict with the types they import from www/wasm-types.d.ts, and neither has an `any` in WebEngine's methods
// or in the types they use, so a typo in a request field or a callback shows up in an editor.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import ts from "typescript";
import { root } from "./harness.mjs";

const generated = path.join(root, "www", "pkg", "gemma_web.d.ts");
const handWritten = path.join(root, "www", "wasm-types.d.ts");

test("the generated declarations compile with the hand-written types they import", () => {
  const program = ts.createProgram([generated], {
    strict: true, noEmit: true, types: [], target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    lib: ["lib.es2022.d.ts", "lib.dom.d.ts", "lib.esnext.disposable.d.ts"],
  });
  const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
  assert.deepEqual(diagnostics, []);
  assert.ok(program.getSourceFile(handWritten), "pkg/gemma_web.d.ts imports wasm-types.d.ts");
});

test("WebEngine's declarations have no any", async () => {
  const dts = `${await readFile(generated, "utf8")}\n${await readFile(handWritten, "utf8")}`;
  const block = (start) => {
    const at = dts.indexOf(start);
    assert.ok(at >= 0, `${start} is declared`);
    // Declarations here are not nested beyond one level of braces in a member; the block ends at the first
    // closing brace at the start of a line.
    const end = dts.indexOf("\n}", at);
    return dts.slice(at, end + 2);
  };
  const names = [
    "export class WebEngine", "export interface ByteReader", "export interface LoadOptions",
    "export type LoadProgress", "export interface Capabilities", "export interface ModelInfo",
    "export interface ChatMessage", "export interface GenerateRequest", "export type OnPiece",
    "export interface GenerateResult",
  ];
  for (const name of names) {
    const text = name.startsWith("export type") ? dts.slice(dts.indexOf(name), dts.indexOf(";", dts.indexOf(name)) + 1) : block(name);
    assert.ok(dts.includes(name), `${name} is declared`);
    assert.doesNotMatch(text, /\bany\b/, `${name}:\n${text}`);
  }
  // Every promise says what it resolves to.
  assert.doesNotMatch(block("export class WebEngine"), /Promise<any>|Promise\b(?!<)/);
});
