// Three tiers, one config: unit (no kernel), host (root, observe mode, loop devices),
// vm (real EIO in a QEMU guest with an error-injection kernel; see tests/vm/README.md).
const tsJest = ['ts-jest', { tsconfig: 'tsconfig.json', isolatedModules: true }];
const project = (name, extra = {}) => ({
  displayName: name,
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': tsJest },
  testMatch: [`<rootDir>/tests/${name}/**/*.test.ts`],
  testTimeout: 120_000,
  ...extra,
});

module.exports = {
  projects: [
    project('unit'),
    project('host'),
    project('vm'),
  ],
};
