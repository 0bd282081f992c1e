"""redis_conf: the single source of the Redis settings and everything rendered from it."""

from redis_conf.acl import APP_FORBIDDEN_COMMANDS, CREDENTIALS, USERS, render_acl_file
from redis_conf.elasticache import elasticache_parameters, family_for, mapping_report
from redis_conf.render import ReplicaOf, TlsFiles, render_redis_conf
from redis_conf.schema import RedisConf, load_base, parse_memory

__all__ = [
    "APP_FORBIDDEN_COMMANDS", "CREDENTIALS", "USERS", "RedisConf", "ReplicaOf", "TlsFiles",
    "elasticache_parameters", "family_for", "load_base", "mapping_report", "parse_memory",
    "render_acl_file", "render_redis_conf",
]
