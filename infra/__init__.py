"""The AWS CDK app: API Gateway, the container-image function, S3 uploads, monitoring."""
