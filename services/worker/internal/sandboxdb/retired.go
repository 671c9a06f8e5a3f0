package sandboxdb

// RetiredMarker is the file the sandbox manager leaves in a destroyed
// sandbox's directory when its events are retained; the event publisher
// removes the directory once every event in it is published.
const RetiredMarker = "retired"
