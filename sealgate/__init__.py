"""The `sealgate` command: the composition root above webportal → gateway → keystore."""
