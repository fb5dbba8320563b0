"""Local stand-ins for what AWS provides: event builders, a Lambda context, an HTTP server (dev only)."""
