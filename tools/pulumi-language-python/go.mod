// virtstack's own Pulumi language host for Python. The upstream host
// (sdk/python/cmd/pulumi-language-python) cannot be fetched from the module
// proxy here, so this small replacement implements the LanguageRuntime gRPC
// service on top of the sdk/v3 protocol definitions.
module virtstack.local/tools/pulumi-language-python

go 1.26.6

require (
	github.com/pulumi/pulumi/sdk/v3 v3.274.1
	google.golang.org/grpc v1.83.2
	google.golang.org/protobuf v1.36.11
)

require (
	go.opentelemetry.io/otel/sdk/metric v1.45.0 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260803160001-6ac0973c030d // indirect
)
