result = {
  if_else   = "small"
  if_only   = "[]"
  for_kv    = "a1;b2;"
  for_index = "0:x 1:y "
}
