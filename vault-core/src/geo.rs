//! Ho Chi Minh City's administrative map as jurisdictions, derived answers and demo data use
//! it: since 1 July 2025 local government has two tiers, the city and its commune-level units
//! (wards, communes and one special zone); there is no district level. The city was merged
//! with Bình Dương and Bà Rịa–Vũng Tàu (`SOURCES`). This is a subset of the real units, named
//! as in those resolutions; their identifiers are this vault's ASCII spellings of the
//! official names (`phuong-sai-gon`), not statistical codes, which this list does not carry.

/// Where the units come from.
pub const SOURCES: &[&str] = &[
    "Nghị quyết số 202/2025/QH15 của Quốc hội (12/6/2025) về việc sắp xếp đơn vị hành chính cấp tỉnh: Thành phố Hồ Chí Minh, tỉnh Bình Dương và tỉnh Bà Rịa – Vũng Tàu thành Thành phố Hồ Chí Minh",
    "Nghị quyết số 1685/NQ-UBTVQH15 của Ủy ban Thường vụ Quốc hội (16/6/2025) về việc sắp xếp các đơn vị hành chính cấp xã của Thành phố Hồ Chí Minh năm 2025",
];

/// The kind of a commune-level unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    /// Phường (urban).
    Ward,
    /// Xã (rural).
    Commune,
    /// Đặc khu.
    SpecialZone,
}

/// A commune-level unit of the city.
#[derive(Debug)]
pub struct Unit {
    /// Identifier: the official name in lowercase ASCII with hyphens (`phuong-sai-gon`).
    pub id: &'static str,
    /// The official Vietnamese name.
    pub name: &'static str,
    /// Ward, commune or special zone.
    pub kind: UnitKind,
    /// The district (or province) its area belonged to before 1 July 2025, for orientation
    /// only (addresses in old documents).
    pub former_area: &'static str,
}

const fn ward(id: &'static str, name: &'static str, former_area: &'static str) -> Unit {
    Unit {
        id,
        name,
        kind: UnitKind::Ward,
        former_area,
    }
}

const fn commune(id: &'static str, name: &'static str, former_area: &'static str) -> Unit {
    Unit {
        id,
        name,
        kind: UnitKind::Commune,
        former_area,
    }
}

/// The units the vault knows (a subset of the city's 168).
pub const HCMC_UNITS: &[Unit] = &[
    ward("phuong-sai-gon", "Phường Sài Gòn", "Quận 1"),
    ward("phuong-tan-dinh", "Phường Tân Định", "Quận 1"),
    ward("phuong-ben-thanh", "Phường Bến Thành", "Quận 1"),
    ward("phuong-cau-ong-lanh", "Phường Cầu Ông Lãnh", "Quận 1"),
    ward("phuong-ban-co", "Phường Bàn Cờ", "Quận 3"),
    ward("phuong-xuan-hoa", "Phường Xuân Hòa", "Quận 3"),
    ward("phuong-nhieu-loc", "Phường Nhiêu Lộc", "Quận 3"),
    ward("phuong-cho-lon", "Phường Chợ Lớn", "Quận 5"),
    ward("phuong-binh-thanh", "Phường Bình Thạnh", "Quận Bình Thạnh"),
    ward("phuong-gia-dinh", "Phường Gia Định", "Quận Bình Thạnh"),
    ward("phuong-phu-nhuan", "Phường Phú Nhuận", "Quận Phú Nhuận"),
    ward("phuong-go-vap", "Phường Gò Vấp", "Quận Gò Vấp"),
    ward(
        "phuong-tan-son-nhat",
        "Phường Tân Sơn Nhất",
        "Quận Tân Bình",
    ),
    ward("phuong-an-khanh", "Phường An Khánh", "Thành phố Thủ Đức"),
    ward("phuong-thu-duc", "Phường Thủ Đức", "Thành phố Thủ Đức"),
    ward("phuong-linh-xuan", "Phường Linh Xuân", "Thành phố Thủ Đức"),
    ward(
        "phuong-thu-dau-mot",
        "Phường Thủ Dầu Một",
        "tỉnh Bình Dương",
    ),
    ward("phuong-di-an", "Phường Dĩ An", "tỉnh Bình Dương"),
    ward(
        "phuong-vung-tau",
        "Phường Vũng Tàu",
        "tỉnh Bà Rịa – Vũng Tàu",
    ),
    ward("phuong-ba-ria", "Phường Bà Rịa", "tỉnh Bà Rịa – Vũng Tàu"),
    commune("xa-cu-chi", "Xã Củ Chi", "Huyện Củ Chi"),
    commune("xa-hoc-mon", "Xã Hóc Môn", "Huyện Hóc Môn"),
    commune("xa-binh-chanh", "Xã Bình Chánh", "Huyện Bình Chánh"),
    commune("xa-nha-be", "Xã Nhà Bè", "Huyện Nhà Bè"),
    commune("xa-can-gio", "Xã Cần Giờ", "Huyện Cần Giờ"),
    commune("xa-binh-khanh", "Xã Bình Khánh", "Huyện Cần Giờ"),
    Unit {
        id: "dac-khu-con-dao",
        name: "Đặc khu Côn Đảo",
        kind: UnitKind::SpecialZone,
        former_area: "tỉnh Bà Rịa – Vũng Tàu",
    },
];

/// The unit with this identifier.
pub fn unit(id: &str) -> Option<&'static Unit> {
    HCMC_UNITS.iter().find(|u| u.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The ASCII spelling of a Vietnamese name, as identifiers are made.
    fn spelled(name: &str) -> String {
        let plain: String = name
            .chars()
            .map(|c| match c {
                'à' | 'á' | 'ả' | 'ã' | 'ạ' | 'ă' | 'ằ' | 'ắ' | 'ẳ' | 'ẵ' | 'ặ' | 'â' | 'ầ'
                | 'ấ' | 'ẩ' | 'ẫ' | 'ậ' => 'a',
                'è' | 'é' | 'ẻ' | 'ẽ' | 'ẹ' | 'ê' | 'ề' | 'ế' | 'ể' | 'ễ' | 'ệ' => {
                    'e'
                }
                'ì' | 'í' | 'ỉ' | 'ĩ' | 'ị' => 'i',
                'ò' | 'ó' | 'ỏ' | 'õ' | 'ọ' | 'ô' | 'ồ' | 'ố' | 'ổ' | 'ỗ' | 'ộ' | 'ơ' | 'ờ'
                | 'ớ' | 'ở' | 'ỡ' | 'ợ' => 'o',
                'ù' | 'ú' | 'ủ' | 'ũ' | 'ụ' | 'ư' | 'ừ' | 'ứ' | 'ử' | 'ữ' | 'ự' => {
                    'u'
                }
                'ỳ' | 'ý' | 'ỷ' | 'ỹ' | 'ỵ' => 'y',
                'đ' => 'd',
                ' ' => '-',
                c => c,
            })
            .collect();
        plain
    }

    #[test]
    fn ids_are_the_official_names_spelled_in_ascii_and_unique() {
        let mut seen = HashSet::new();
        for u in HCMC_UNITS {
            assert!(seen.insert(u.id), "duplicate {}", u.id);
            assert_eq!(spelled(&u.name.to_lowercase()), u.id);
            let prefix = match u.kind {
                UnitKind::Ward => "Phường ",
                UnitKind::Commune => "Xã ",
                UnitKind::SpecialZone => "Đặc khu ",
            };
            assert!(u.name.starts_with(prefix), "{}", u.name);
        }
        assert_eq!(
            unit("phuong-sai-gon").map(|u| u.name),
            Some("Phường Sài Gòn")
        );
        assert!(unit("760").is_none(), "no district codes");
        assert!(HCMC_UNITS.iter().any(|u| u.kind == UnitKind::SpecialZone));
    }
}
