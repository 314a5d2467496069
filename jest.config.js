// Three tiers, one config: unit (no kernel), host (root, observe mode, loop devices),
// vm (real EIO in a QEMU guest with an error-injection kernel; see tests/vm/README.md).
const tsJest = ['ts-jest', { tsconfig: 'tsconfig.json' }];
const project = (name, extra = {}) => ({
  displayName: name,
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': tsJest },
  testMatch: [`<rootDir>/tests/${name}/**/*.test.ts`],
  ...extra,
});

module.exports = {
  testTimeout: 120_000,
  projects: [
    project('unit'),
    project('host'),
    project('vm'),
  ],
};
