package alert

// SetHook makes the stage call f at each point of a face's handling
// ("looked-up", "claimed", "published").
func (s *Stage) SetHook(f func(point string)) { s.hook = f }
