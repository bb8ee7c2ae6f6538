"""Seeds a moto server for the ECR tests, with boto3 (the AWS SDK moto is
installed with): a user whose access key may call ECR's
GetAuthorizationToken, and a role with the same right that web identities
may assume. Prints the key and role as one JSON line.

Usage: python moto_seed.py ENDPOINT
"""

import json
import sys

import boto3

endpoint = sys.argv[1]
session = boto3.session.Session(
    aws_access_key_id="seed", aws_secret_access_key="seed", region_name="us-east-1"
)
iam = session.client("iam", endpoint_url=endpoint)
policy = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}
        ],
    }
)
iam.create_user(UserName="ci")
iam.put_user_policy(UserName="ci", PolicyName="ecr-login", PolicyDocument=policy)
key = iam.create_access_key(UserName="ci")["AccessKey"]
trust = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": "token.actions.githubusercontent.com"},
                "Action": "sts:AssumeRoleWithWebIdentity",
            }
        ],
    }
)
role = iam.create_role(RoleName="ci-push", AssumeRolePolicyDocument=trust)["Role"]
iam.put_role_policy(RoleName="ci-push", PolicyName="ecr-login", PolicyDocument=policy)
print(
    json.dumps(
        {
            "access_key_id": key["AccessKeyId"],
            "secret_access_key": key["SecretAccessKey"],
            "role_arn": role["Arn"],
        }
    )
)
