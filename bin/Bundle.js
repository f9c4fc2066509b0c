/**
 * The CLI compiled into one module, so that a start loads one file instead of sending each of our sources and each of
 * Effect's ~1,200 modules through tsx's loader hooks: `connect --help` took about 7 s of CPU that way on the 2-core
 * test machine, 1.5 s from the bundle. Built with the esbuild that tsx installs into node_modules/.cache/connect/, and
 * used only while every source it was built from, tsconfig.json, package.json and the installed packages' lock still
 * have the size and modification time they had when they were read; otherwise it is built again. When it cannot be
 * built or kept (no esbuild, a read-only install), `connect.js` runs the sources through tsx as before.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import { builtinModules } from "node:module"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"

const root = Path.resolve(import.meta.dirname, "..")
const entry = Path.join(root, "bin", "connect.ts")
const cacheDir = Path.join(root, "node_modules", ".cache", "connect")
const manifestPath = Path.join(cacheDir, "manifest.json")
// Files that change what the bundle must be without being imported: how sources compile, which packages are installed.
const settings = ["tsconfig.json", "package.json", "package-lock.json", "node_modules/.package-lock.json"].map((file) =>
  Path.join(root, file)
)

/** Size and modification time of `file`, or [-1, -1] when it is missing. */
const stamp = (file) => {
  try {
    const stat = Fs.statSync(file)
    return [stat.size, stat.mtimeMs]
  } catch {
    return [-1, -1]
  }
}

/** The bundle's path when the manifest's bundle exists and every input is as it was read; else undefined. */
const fresh = () => {
  let manifest
  try {
    manifest = JSON.parse(Fs.readFileSync(manifestPath, "utf8"))
  } catch {
    return undefined
  }
  if (manifest.node !== process.versions.node || manifest.root !== root) return undefined
  for (const [file, size, mtimeMs] of manifest.inputs) {
    const now = stamp(file)
    if (now[0] !== size || now[1] !== mtimeMs) return undefined
  }
  const bundle = Path.join(cacheDir, manifest.bundle)
  return Fs.existsSync(bundle) ? bundle : undefined
}

/**
 * esbuild plugin: each of our sources is stamped before it is read (so that a source changed during the build makes
 * the bundle stale, never the other way round), and its `import.meta.url`/`dirname`/`filename` become the source's
 * own, as they are under tsx (package.json, the console's files and `bin/connect` are found relative to them).
 */
const ownSources = (inputs) => ({
  name: "connect-own-sources",
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, (args) => {
      if (args.path.split(Path.sep).includes("node_modules")) return undefined
      const before = stamp(args.path)
      const text = Fs.readFileSync(args.path, "utf8")
      inputs.push([args.path, ...before])
      const meta = {
        url: JSON.stringify(pathToFileURL(args.path).href),
        dirname: JSON.stringify(Path.dirname(args.path)),
        filename: JSON.stringify(args.path)
      }
      return { contents: text.replace(/\bimport\.meta\.(url|dirname|filename)\b/g, (_, key) => meta[key]), loader: "ts" }
    })
  }
})

/** The package a bare import names: `effect`, `@effect/sql-pg`, `pg`. */
const packageOf = (specifier) => specifier.split("/").slice(0, specifier.startsWith("@") ? 2 : 1).join("/")

/**
 * esbuild plugin: Effect's packages (about 1,200 small ES modules, most of a start's time when each is loaded on its
 * own) go into the bundle; every other package stays a module of its own, imported by the absolute path it resolves
 * to from its importer (as Node would resolve it there: native addons, packages that find files beside themselves,
 * and each package's own copy of a dependency stay as installed).
 */
const dependencies = {
  name: "connect-dependencies",
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, async (args) => {
      if (args.pluginData === "connect-resolving") return undefined
      const name = packageOf(args.path)
      if (args.path.startsWith("node:") || builtinModules.includes(name)) return { path: args.path, external: true }
      if (name === "effect" || name.startsWith("@effect/")) return undefined
      const resolved = await build.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, pluginData: "connect-resolving" })
      if (resolved.errors.length > 0) return { errors: resolved.errors }
      return { path: pathToFileURL(resolved.path).href, external: true }
    })
  }
}

/**
 * Removes bundles other than `current` that are more than an hour old (each source edit makes a new one; a process
 * that read the manifest a moment ago may still be about to import the one before).
 */
const forgetOld = (current) => {
  const hourAgo = Date.now() - 3_600_000
  for (const file of Fs.readdirSync(cacheDir)) {
    if (!file.startsWith("connect-") || file.startsWith(current)) continue
    const path = Path.join(cacheDir, file)
    try {
      if (Fs.statSync(path).mtimeMs < hourAgo) Fs.rmSync(path, { force: true })
    } catch {
      // Removed by another process meanwhile.
    }
  }
}

/** Builds the bundle and its manifest (each written whole, then renamed into place); resolves the bundle's path. */
const build = async () => {
  const esbuild = await import("esbuild")
  const inputs = settings.map((file) => [file, ...stamp(file)])
  const result = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    platform: "node",
    format: "esm",
    target: `node${process.versions.node}`,
    // As tsx compiles: class and function names survive (error names, Effect spans), stack traces map to the sources.
    keepNames: true,
    sourcemap: "linked",
    sourcesContent: false,
    outfile: Path.join(cacheDir, "connect.mjs"),
    write: false,
    logLevel: "silent",
    plugins: [dependencies, ownSources(inputs)]
  })
  const code = result.outputFiles.find((file) => file.path.endsWith(".mjs"))
  const map = result.outputFiles.find((file) => file.path.endsWith(".map"))
  const name = `connect-${Crypto.createHash("sha256").update(code.contents).digest("hex").slice(0, 16)}.mjs`
  Fs.mkdirSync(cacheDir, { recursive: true })
  const put = (file, contents) => {
    const temporary = `${file}.${process.pid}.tmp`
    Fs.writeFileSync(temporary, contents)
    Fs.renameSync(temporary, file)
  }
  put(Path.join(cacheDir, `${name}.map`), map.contents)
  put(
    Path.join(cacheDir, name),
    Buffer.concat([Buffer.from(code.text.replace(/\/\/# sourceMappingURL=\S+\s*$/, "")), Buffer.from(`//# sourceMappingURL=${name}.map\n`)])
  )
  put(manifestPath, JSON.stringify({ node: process.versions.node, root, bundle: name, inputs }))
  forgetOld(name)
  return Path.join(cacheDir, name)
}

/** The URL of an up-to-date bundle of the CLI (built now if needed), or undefined when there cannot be one. */
export const bundle = async () => {
  try {
    const path = fresh() ?? (await build())
    return pathToFileURL(path).href
  } catch {
    return undefined
  }
}
