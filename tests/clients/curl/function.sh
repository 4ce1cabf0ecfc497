# The handler of the curl runtime. `handler EVENT REQUEST_ID` prints the
# response and returns 0. When the message is "fail", it prints an error
# message and returns 1. Fields are cut out of the event JSON with grep and
# sed, so their values must not contain a double quote.
event_field() {
  printf '%s' "$1" | grep -o "\"$2\": *\"[^\"]*\"" | head -n 1 | sed 's/^.*: *"\(.*\)"$/\1/'
}

handler() {
  local event="$1" request_id="$2" body connection_id reply
  body=$(event_field "$event" body)
  connection_id=$(event_field "$event" connectionId)
  if [ "$body" = "fail" ]; then
    echo "handler failed on purpose" >&2
    printf 'handler failed on purpose'
    return 1
  fi
  # `$$` in a command substitution is still the bootstrap's own pid.
  reply="{\\\"client\\\": \\\"curl\\\", \\\"body\\\": \\\"$body\\\", \\\"connectionId\\\": \\\"$connection_id\\\", \\\"requestId\\\": \\\"$request_id\\\", \\\"pid\\\": $$}"
  printf '{"statusCode": 200, "body": "%s"}' "$reply"
}
