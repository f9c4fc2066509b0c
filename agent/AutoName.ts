/**
 * Service names picked from a well-known port when `connect expose HOST:PORT` is given no `--name`, as Private
 * Connect users expect (`connect expose localhost:5432` → "postgres").
 */

/** Well-known ports and the service name they get. */
export const WELL_KNOWN: ReadonlyMap<number, string> = new Map([
  [22, "ssh"],
  [25, "smtp"],
  [53, "dns"],
  [80, "http"],
  [443, "https"],
  [1433, "mssql"],
  [1521, "oracle"],
  [2181, "zookeeper"],
  [3000, "http"],
  [3306, "mysql"],
  [4222, "nats"],
  [5000, "http"],
  [5432, "postgres"],
  [5601, "kibana"],
  [5672, "rabbitmq"],
  [6379, "redis"],
  [6443, "kubernetes"],
  [7474, "neo4j"],
  [8000, "http"],
  [8080, "http"],
  [8086, "influxdb"],
  [8200, "vault"],
  [8443, "https"],
  [8500, "consul"],
  [9000, "minio"],
  [9042, "cassandra"],
  [9090, "prometheus"],
  [9092, "kafka"],
  [9200, "elasticsearch"],
  [11211, "memcached"],
  [15672, "rabbitmq-admin"],
  [26257, "cockroachdb"],
  [27017, "mongodb"]
])

/**
 * The name for a target on `port`: its well-known name, else `port-PORT`; when that name is already `taken` (two
 * web servers on 3000 and 8080), the port is appended ("http-8080").
 */
export const autoName = (port: number, taken: ReadonlySet<string> = new Set()): string => {
  const known = WELL_KNOWN.get(port)
  if (known === undefined) return `port-${port}`
  return taken.has(known) ? `${known}-${port}` : known
}
