"""Tests: unit, REST and Socket.IO test-client tests here; e2e/ runs the real server; support/ is shared."""
