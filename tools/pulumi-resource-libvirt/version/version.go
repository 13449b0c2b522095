// Package version holds the provider version, set at build time with
// -ldflags "-X virtstack.local/tools/pulumi-resource-libvirt/version.Version=0.5.4".
package version

// Version is the version the plugin reports to the engine.
var Version = "0.0.0-dev"
