"""The AWS CDK app: API Gateway, the container-image function, S3 uploads, monitoring."""

import os

# jsii prints a 12-line Node 20 end-of-life banner (as Python byte strings) in every process that
# imports aws_cdk; Node 20 is what Debian ships here. `make` sets the same.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
