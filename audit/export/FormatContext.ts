/**
 * What a formatter needs to know beyond the event: the software writing the export and the host it runs on. The
 * export command builds it once; tests pass a fixed one so that golden files stay stable.
 */

/** The context every formatter receives. */
export interface FormatContext {
  /** connect's version, written as the product version (CEF header, OCSF metadata.product, ECS observer, syslog origin). */
  readonly productVersion: string
  /** The exporting host's name, written as the RFC 5424 HOSTNAME. */
  readonly hostname: string
}
