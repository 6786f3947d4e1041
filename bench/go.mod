module github.com/seed44b27a20/conn/bench

go 1.25

require (
	github.com/go-kit/kit v0.13.0
	github.com/go-kit/log v0.2.1
	github.com/rs/zerolog v1.35.1
	github.com/seed44b27a20/conn v0.0.0
	go.uber.org/zap v1.28.0
)

require (
	github.com/go-logfmt/logfmt v0.5.1 // indirect
	go.uber.org/multierr v1.10.0 // indirect
)

replace github.com/seed44b27a20/conn => ../
