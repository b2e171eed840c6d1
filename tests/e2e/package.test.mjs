// The npm package in www/ without a browser: its TypeScript declarations type a consumer program under
// `tsc --strict` (and reject its deliberate mistakes), they declare exactly what the modules export and the members
// of the engine and the element (a method added to the JS without its type fails here), and
// `npm pack` holds every module, worker and wasm file the packed code imports or fetches, and nothing of the demo
// page, the tests or the examples. Needs `make wasm` (www/pkg) first, as `make test` does.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import ts from "typescript";
import { root } from "./harness.mjs";

const run = promisify(execFile);
const www = path.join(root, "www");
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");

test("a consumer program type-checks against the declarations, and their mistakes do not", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "gemma-web-types-"));
  try {
    // Imported by package name, so the package.json `exports` and `types` conditions are what resolves them.
    await mkdir(path.join(dir, "node_modules"));
    await symlink(www, path.join(dir, "node_modules", "gemma-web"), "dir");
    await copyFile(path.join(root, "tests", "types", "consumer.ts"), path.join(dir, "consumer.ts"));
    await writeFile(path.join(dir, "tsconfig.json"), JSON.stringify({
      compilerOptions: {
        strict: true, noEmit: true, target: "ES2022", module: "ESNext", moduleResolution: "Bundler",
        lib: ["ES2022", "DOM", "DOM.Iterable", "DOM.AsyncIterable"], types: [], skipLibCheck: false,
        noUnusedLocals: false,
      },
      files: ["consumer.ts"],
    }));
    const result = await run(process.execPath, [tsc, "-p", dir], { cwd: dir }).then(
      () => ({ code: 0, out: "" }),
      (e) => ({ code: e.code, out: `${e.stdout}${e.stderr}` }),
    );
    assert.equal(result.code, 0, `tsc --strict failed:\n${result.out}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/** Names of the values a JS module exports (export function/class/const/let and export { a, b }). */
function jsExports(file, text) {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS);
  const names = [];
  const exported = (node) => ts.getCombinedModifierFlags(node) & ts.ModifierFlags.Export;
  for (const node of source.statements) {
    if ((ts.isFunctionDeclaration(node) || ts.isClassDeclaration(node)) && exported(node)) names.push(node.name.text);
    if (ts.isVariableStatement(node) && exported(node)) {
      for (const d of node.declarationList.declarations) names.push(d.name.text);
    }
    if (ts.isExportDeclaration(node) && node.exportClause && ts.isNamedExports(node.exportClause)) {
      for (const e of node.exportClause.elements) names.push(e.name.text);
    }
  }
  return names.sort();
}

test("the declarations declare exactly the values each module exports", async () => {
  const files = ["gemma-web", "gemma-chat"].map((m) => path.join(www, `${m}.d.ts`));
  const program = ts.createProgram(files, { strict: true, noEmit: true, types: [], lib: ["lib.es2022.d.ts", "lib.dom.d.ts"] });
  const checker = program.getTypeChecker();
  for (const file of files) {
    const symbol = checker.getSymbolAtLocation(program.getSourceFile(file));
    const declared = checker.getExportsOfModule(symbol)
      .filter((s) => s.flags & ts.SymbolFlags.Value)
      .map((s) => s.name)
      .sort();
    const js = file.replace(/\.d\.ts$/, ".js");
    const actual = jsExports(js, await readFile(js, "utf8"));
    assert.ok(actual.length > 0, `${js} exports something`);
    assert.deepEqual(declared, actual, `${path.basename(file)} declares the values ${path.basename(js)} exports`);
  }
});

/** Public members of `class name` in a JS file: methods, getters, and the fields its constructor sets. */
function classMembers(file, text, name) {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS);
  const cls = source.statements.find((s) => ts.isClassDeclaration(s) && s.name?.text === name);
  assert.ok(cls, `class ${name} in ${file}`);
  const names = new Set();
  for (const m of cls.members) {
    const isStatic = ts.getCombinedModifierFlags(m) & ts.ModifierFlags.Static;
    if (m.name && !ts.isPrivateIdentifier(m.name) && !isStatic &&
      (ts.isMethodDeclaration(m) || ts.isGetAccessor(m) || ts.isSetAccessor(m) || ts.isPropertyDeclaration(m))) {
      names.add(m.name.text);
    }
    if (ts.isConstructorDeclaration(m)) {
      const visit = (node) => {
        if (ts.isBinaryExpression(node) && node.operatorToken.kind === ts.SyntaxKind.EqualsToken &&
          ts.isPropertyAccessExpression(node.left) && node.left.expression.kind === ts.SyntaxKind.ThisKeyword &&
          !ts.isPrivateIdentifier(node.left.name)) {
          names.add(node.left.name.text);
        }
        ts.forEachChild(node, visit);
      };
      visit(m.body);
    }
  }
  return [...names].sort();
}

test("the Engine and element types list exactly the classes' public members", async () => {
  const files = ["gemma-web", "gemma-chat"].map((m) => path.join(www, `${m}.d.ts`));
  const program = ts.createProgram(files, { strict: true, noEmit: true, types: [], lib: ["lib.es2022.d.ts", "lib.dom.d.ts"] });
  const checker = program.getTypeChecker();
  // The declared type's own members, without what EventTarget and HTMLElement bring.
  const declared = (file, typeName, base) => {
    const module = checker.getSymbolAtLocation(program.getSourceFile(file));
    const symbol = checker.getExportsOfModule(module).find((s) => s.name === typeName);
    const type = checker.getDeclaredTypeOfSymbol(symbol);
    const inherited = new Set(checker.getPropertiesOfType(checker.getDeclaredTypeOfSymbol(
      checker.resolveName(base, undefined, ts.SymbolFlags.Type, false))).map((p) => p.name));
    return checker.getPropertiesOfType(type).map((p) => p.name).filter((n) => !inherited.has(n)).sort();
  };
  const pairs = [
    ["gemma-web", "Engine", "Engine", "EventTarget"],
    ["gemma-chat", "GemmaChatElement", "GemmaChatElement", "HTMLElement"],
  ];
  for (const [module, className, typeName, base] of pairs) {
    const js = path.join(www, `${module}.js`);
    // The custom-element reactions are the browser's to call, not API.
    const actual = classMembers(js, await readFile(js, "utf8"), className)
      .filter((n) => !/^(connected|disconnected|adopted|attributeChanged)Callback$/.test(n));
    assert.deepEqual(declared(path.join(www, `${module}.d.ts`), typeName, base), actual,
      `${typeName} in ${module}.d.ts has the members of class ${className}`);
  }
});

/** Relative module specifiers and `new URL("…", import.meta.url)` targets in a packed file. */
function references(file, text) {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true,
    file.endsWith(".d.ts") ? ts.ScriptKind.TS : ts.ScriptKind.JS);
  const found = [];
  const visit = (node) => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier) {
      found.push(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      if (ts.isStringLiteral(node.arguments[0])) found.push(node.arguments[0].text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      found.push(node.argument.literal.text);
    } else if (ts.isNewExpression(node) && node.expression.getText() === "URL" && node.arguments?.length === 2 &&
      node.arguments[1].getText() === "import.meta.url" && ts.isStringLiteralLike(node.arguments[0])) {
      found.push(node.arguments[0].text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found.filter((s) => !/^[a-z][a-z0-9+.-]*:/i.test(s));
}

test("npm pack holds everything the packed modules load, and none of the page, tests or examples", async () => {
  const pkg = JSON.parse(await readFile(path.join(www, "package.json"), "utf8"));
  assert.equal(pkg.name, "gemma-web");
  assert.equal(pkg.type, "module");
  assert.equal(pkg.license, "Apache-2.0");
  assert.match(pkg.version, /^\d+\.\d+\.\d+$/);

  const { stdout } = await run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: www });
  const packed = new Set(JSON.parse(stdout)[0].files.map((f) => f.path));
  for (const listed of pkg.files) assert.ok(packed.has(listed), `${listed} is packed (run make wasm for pkg/)`);

  // The package's entry points.
  const targets = [pkg.main, pkg.types];
  for (const target of Object.values(pkg.exports)) {
    targets.push(...(typeof target === "string" ? [target] : Object.values(target)));
  }
  for (const t of targets) assert.ok(packed.has(path.posix.normalize(t)), `${t} (package.json) is packed`);

  // Everything the packed code imports or fetches relative to itself.
  let checked = 0;
  for (const file of packed) {
    if (!/\.(m?js|d\.ts)$/.test(file)) continue;
    const text = await readFile(path.join(www, file), "utf8");
    for (const spec of references(file, text)) {
      let target = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec));
      // A declaration file imports the .js module whose types are the .d.ts next to it.
      if (file.endsWith(".d.ts")) target = target.replace(/\.js$/, ".d.ts");
      assert.ok(!target.startsWith(".."), `${file} reaches outside the package: ${spec}`);
      assert.ok(packed.has(target), `${file} loads ${spec}, which is not packed (${target})`);
      checked++;
    }
  }
  assert.ok(checked >= 8, `only ${checked} references found: the scan is broken`);

  for (const file of packed) {
    assert.doesNotMatch(file, /^(examples|test|tests)\/|\.html$|^(app\.js|style\.css)$/, `${file} should not be packed`);
  }
});
