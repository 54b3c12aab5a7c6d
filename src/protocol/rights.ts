/**
 * Rights a service policy can hold: IoT Hub's three data-plane rights, and PolicyWrite, the
 * right to manage policies, which IoT Hub keeps in its control plane (Azure Resource Manager)
 * and dstream grants only to the `service` policy made at init (docs/security.md).
 */
export type Right = 'ServiceConnect' | 'RegistryRead' | 'RegistryWrite' | 'PolicyWrite';
export const allRights: readonly Right[] = [
  'ServiceConnect',
  'RegistryRead',
  'RegistryWrite',
  'PolicyWrite',
];
