module github.com/seed44b27a20/conn

go 1.25

require (
	github.com/go-kit/log v0.2.1
	go.uber.org/goleak v1.3.0
)

require github.com/go-logfmt/logfmt v0.5.1 // indirect
