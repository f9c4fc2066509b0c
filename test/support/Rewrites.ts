/** Statements a database role able to rewrite history would succeed with: the hub's role must fail every one. */
export const rewrites = [
  "alter table events disable trigger events_no_update_delete",
  "alter table events disable trigger all",
  "delete from events",
  "truncate events",
  "update events set meta = '{}'",
  "drop table events",
  "alter table events owner to current_user",
  "drop trigger events_no_update_delete on events"
]
