module bizcloud.local/examples/demo-web

go 1.24
