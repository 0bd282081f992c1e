"""redisstack CrossGuard policy pack: the policies live in `policy.policies`."""
