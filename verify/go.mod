module github.com/sessiongate/caddy-session/verify

go 1.25
