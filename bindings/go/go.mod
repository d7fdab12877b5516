module astranet.dev/astranet

go 1.22
