formatdate "verbs" {
  call   = formatdate("YYYY-MM-DD hh:mm:ss", "2024-03-07T09:05:01Z")
  result = "2024-03-07 09:05:01"
}
formatdate "names and 12 hour clock" {
  call   = formatdate("EEEE, D MMMM YY H:mm aa EEE MMM", "2024-03-07T21:05:00Z")
  result = "Thursday, 7 March 24 9:05 pm Thu Mar"
}
formatdate "zones" {
  call   = formatdate("Z ZZZ ZZZZ ZZZZZ", "2024-01-02T03:04:05+05:30")
  result = "+05:30 +0530 +0530 +05:30"
}
formatdate "utc zones" {
  call   = formatdate("Z ZZZ", "2024-01-02T03:04:05Z")
  result = "Z UTC"
}
formatdate "quoted literals" {
  call   = formatdate("'Year' YYYY, 'o''clock' h", "2024-01-02T15:00:00Z")
  result = "Year 2024, o'clock 15"
}
formatdate "bad timestamp" {
  call  = formatdate("YYYY", "2024-13-01T00:00:00Z")
  error = "RFC 3339"
}
formatdate "bad verb" {
  call  = formatdate("YYY", "2024-01-01T00:00:00Z")
  error = "invalid date format verb"
}
formattimestamp "from a unix number" {
  call   = formattimestamp("YYYY-MM-DD'T'hh:mm:ssZ", 86400)
  result = "1970-01-02T00:00:00Z"
}
formattimestamp "unix seconds" {
  call   = formattimestamp("X", "2001-09-09T01:46:40Z")
  result = "1000000000"
}
timeadd "hours and minutes" {
  call   = timeadd("2024-01-01T23:30:00Z", "1h45m")
  result = "2024-01-02T01:15:00Z"
}
timeadd "negative keeps the offset" {
  call   = timeadd("2024-01-01T00:00:00+02:00", "-90s")
  result = "2023-12-31T23:58:30+02:00"
}
timeadd "bad duration" {
  call  = timeadd("2024-01-01T00:00:00Z", "1 day")
  error = "not a duration"
}
timestamp "rfc3339 utc" {
  call   = can(regex("^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}Z$", timestamp()))
  result = true
}
unixtimestampparse "fields" {
  call = unixtimestampparse(1700000000)
  result = {
    year = 2023, year_day = 318, day = 14, month = 11, month_name = "November",
    weekday = 2, weekday_name = "Tuesday", hour = 22, minute = 13, second = 20,
    rfc3339 = "2023-11-14T22:13:20Z", iso_year = 2023, iso_week = 46
  }
  type = object({
    year = number, year_day = number, day = number, month = number, month_name = string,
    weekday = number, weekday_name = string, hour = number, minute = number, second = number,
    rfc3339 = string, iso_year = number, iso_week = number
  })
}
