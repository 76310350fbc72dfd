package erasure

// SetAfterStep makes the purger call f after each step that succeeded; an
// error from f fails the purge there.
func (p *Purger) SetAfterStep(f func(Step) error) { p.afterStep = f }
