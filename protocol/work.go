package protocol

// Work is measured, not estimated: the sandbox meters every job's executed
// WebAssembly operations (weighted, see docs/sandbox.md) in standard work
// units, the same count on every machine. Speed ties work to time.

// WorkPerSecond is the number of standard work units a machine of speed 1.0
// (SpeedUnit, the paper's "1 GHz CPU") performs per second.
const WorkPerSecond = 1_000_000_000

// WorkPerMicroPerMilli is the work per microsecond per milli standard unit
// of speed: a worker rated s (in Speed's milli units) performs exactly s
// work units per microsecond, so work ÷ Speed is microseconds.
const WorkPerMicroPerMilli = WorkPerSecond / 1_000_000 / 1000 // SpeedUnit = 1000 milli units

// WorkBudget is the work budget of a job whose max run time is
// timeoutMillis: what speed 1.0 does in that time. A job that exhausts it
// stops with StatusWorkLimit on every replica alike.
func WorkBudget(timeoutMillis uint64) uint64 {
	return timeoutMillis * (WorkPerSecond / 1000)
}

// WallClockFactor is the safety net against a stuck host: a worker may stop
// a job whose max run time is T after WallClockFactor × T of wall-clock
// time (status timeout, which is not deterministic and never counts as
// agreement). A job ends by its work budget long before on any machine
// rated above 1/WallClockFactor.
const WallClockFactor = 4
