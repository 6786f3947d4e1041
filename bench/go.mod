module github.com/seed44b27a20/conn/bench

go 1.26

require (
	github.com/go-kit/kit v0.13.0
	github.com/go-kit/log v0.2.1
	github.com/seed44b27a20/conn v0.0.0
)

require github.com/go-logfmt/logfmt v0.5.1 // indirect

replace github.com/seed44b27a20/conn => ../
