module github.com/seed44b27a20/conn/e2e

go 1.25

replace github.com/seed44b27a20/conn => ../

require (
	github.com/go-kit/kit v0.13.0
	github.com/go-kit/log v0.2.1
	github.com/seed44b27a20/conn v0.0.0-00010101000000-000000000000
)

require (
	github.com/VividCortex/gohistogram v1.0.0 // indirect
	github.com/go-logfmt/logfmt v0.5.1 // indirect
)
