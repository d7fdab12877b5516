module astranet.dev/astranet/bench

go 1.22

require (
	astranet.dev/astranet v0.0.0
	github.com/astranet/astranet v0.0.0-20190823085356-edc0cc614b25
	github.com/hashicorp/yamux v0.1.2
	github.com/xtaci/smux v1.5.58
)

require (
	github.com/astranet/btree-2d v0.0.0-20170626225459-4b00686449f2 // indirect
	github.com/cenk/backoff v2.2.1+incompatible // indirect
	github.com/serialx/hashring v0.0.0-20190515033939-7706f26af194 // indirect
)

replace (
	astranet.dev/astranet => ../
	github.com/astranet/astranet => ../../../../shared/peers/astranet-go
)
