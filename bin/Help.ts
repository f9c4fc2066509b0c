/**
 * The short help of a command with subcommands (`connect --help`, `connect hub --help`): one line per command that
 * does something, once, with the first clause of its description. @effect/cli's own help prints each subcommand
 * behind the full usage of its parents (`hub [--port integer] … apikey create`), which is what this replaces.
 */
import type * as Descriptor from "@effect/cli/CommandDescriptor"
import type * as HelpDoc from "@effect/cli/HelpDoc"
import type * as Span from "@effect/cli/HelpDoc/Span"

/**
 * The shape @effect/cli (0.77) builds a command descriptor with. Only names, descriptions, whether a command takes
 * options or arguments, and the tree are read.
 */
type Node =
  | {
    readonly _tag: "Standard" | "GetUserInput"
    readonly name: string
    readonly description: HelpDoc.HelpDoc
    readonly options?: { readonly _tag: string }
    readonly args?: { readonly _tag: string }
  }
  | { readonly _tag: "Map"; readonly command: Node }
  | { readonly _tag: "Subcommands"; readonly parent: Node; readonly children: ReadonlyArray<Node> }

/** One line of the short help: the command's words after the root's name, and what it does. */
export interface Entry {
  readonly path: string
  readonly summary: string
}

/** Longest summary shown; a longer first clause is cut at a word with "…". */
export const SUMMARY_WIDTH = 64

const spanText = (span: Span.Span): string => {
  switch (span._tag) {
    case "Text":
    case "URI":
      return span.value
    case "Sequence":
      return spanText(span.left) + spanText(span.right)
    default:
      return spanText(span.value)
  }
}

const docText = (doc: HelpDoc.HelpDoc): string => {
  switch (doc._tag) {
    case "Paragraph":
    case "Header":
      return spanText(doc.value)
    case "Sequence":
      return `${docText(doc.left)} ${docText(doc.right)}`.trim()
    case "Enumeration":
      return doc.elements.map(docText).join(" ")
    case "DescriptionList":
      return doc.definitions.map(([span, d]) => `${spanText(span)} ${docText(d)}`).join(" ")
    case "Empty":
      return ""
  }
}

/**
 * The first clause of a description, up to its first ". ", "; " or ": " (a colon inside `host:port` does not end
 * it), cut to {@link SUMMARY_WIDTH} characters at a word.
 */
export const summarize = (description: string): string => {
  const text = description.replace(/\s+/g, " ").trim()
  const end = text.search(/[.;:](\s|$)/)
  const clause = end === -1 ? text : text.slice(0, end)
  if (clause.length <= SUMMARY_WIDTH) return clause
  const cut = clause.slice(0, SUMMARY_WIDTH - 1)
  const space = cut.lastIndexOf(" ")
  return `${(space > SUMMARY_WIDTH / 2 ? cut.slice(0, space) : cut).replace(/[\s,(—-]+$/, "")}…`
}

const leaf = (node: Node): Extract<Node, { readonly name: string }> =>
  node._tag === "Map" ? leaf(node.command) : node._tag === "Subcommands" ? leaf(node.parent) : node

const takesInput = (node: Node): boolean => {
  const standard = leaf(node)
  return standard.options?._tag !== undefined && standard.options._tag !== "Empty" ||
    standard.args?._tag !== undefined && standard.args._tag !== "Empty"
}

const walk = (node: Node, prefix: ReadonlyArray<string>, top: boolean): ReadonlyArray<Entry> => {
  if (node._tag === "Map") return walk(node.command, prefix, top)
  const self = leaf(node)
  const path = top ? [] : [...prefix, self.name]
  const entry = { path: path.join(" "), summary: summarize(docText(self.description)) }
  if (node._tag !== "Subcommands") return top ? [] : [entry]
  // A group (`hub workspace`) only leads to its subcommands; a parent that takes options (`hub`, `audit`) runs too.
  const own = !top && takesInput(node) ? [entry] : []
  return [...own, ...node.children.flatMap((child) => walk(child, path, false))]
}

/** The commands under `descriptor` that do something, each once, in declaration order. */
export const entries = (descriptor: Descriptor.Command<unknown>): ReadonlyArray<Entry> =>
  walk(descriptor as unknown as Node, [], true)

/** The subcommand node at `path` (names after the root's), or undefined when the path names none. */
export const find = (
  descriptor: Descriptor.Command<unknown>,
  path: ReadonlyArray<string>
): Descriptor.Command<unknown> | undefined => {
  let node = descriptor as unknown as Node
  for (const name of path) {
    while (node._tag === "Map") node = node.command
    if (node._tag !== "Subcommands") return undefined
    const child = node.children.find((c) => leaf(c).name === name)
    if (child === undefined) return undefined
    node = child
  }
  return node as unknown as Descriptor.Command<unknown>
}

/** Whether the descriptor has subcommands (so its short help applies). */
export const hasSubcommands = (descriptor: Descriptor.Command<unknown>): boolean => {
  let node = descriptor as unknown as Node
  while (node._tag === "Map") node = node.command
  return node._tag === "Subcommands"
}

/** The description of a command, as one line of plain text. */
export const descriptionOf = (descriptor: Descriptor.Command<unknown>): string =>
  docText(leaf(descriptor as unknown as Node).description)

/** The COMMANDS block: `  <root> <path>  <summary>`, paths padded to one column. */
export const format = (root: string, list: ReadonlyArray<Entry>): string => {
  const width = Math.max(...list.map((e) => e.path.length))
  return list.map((e) => `  ${root} ${e.path.padEnd(width)}  ${e.summary}`.trimEnd()).join("\n")
}

/** The command itself of a node with subcommands, without them (for its own description and options). */
export const parentOf = (descriptor: Descriptor.Command<unknown>): Descriptor.Command<unknown> => {
  let node = descriptor as unknown as Node
  while (node._tag === "Map") node = node.command
  return (node._tag === "Subcommands" ? node.parent : node) as unknown as Descriptor.Command<unknown>
}
