"""BizCloud's sample services: demo-web (access layer) calls demo-api (SOA provider) through the SDK."""
