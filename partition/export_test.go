package partition

// SetLoadHook makes s.Load call f between reading the inbox position and
// loading the records: a test's way to race a Save against a Load.
func SetLoadHook(s *Subs, f func()) { s.afterPos = f }
