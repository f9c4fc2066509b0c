/**
 * Entry point of `npm run bench -- NAME [--json [FILE]] [...]`: runs one benchmark module from this folder
 * (`eventlog`, `relay`, `audit`, `clients`), which prints a table and, with --json, writes its figures.
 */
const [name, ...args] = process.argv.slice(2)
const known = ["eventlog", "relay", "audit", "link", "clients"]
if (!name || !known.includes(name)) {
  console.error(`usage: npm run bench -- <${known.join("|")}> [--json [FILE]] [options]`)
  process.exit(2)
}
const mod = (await import(`./${name}.ts`)) as { main: (args: ReadonlyArray<string>) => Promise<void> }
await mod.main(args)
