class _Registry:
    def register(self, obj=None):
        return obj if obj is not None else (lambda o: o)


ARCH_REGISTRY = _Registry()
